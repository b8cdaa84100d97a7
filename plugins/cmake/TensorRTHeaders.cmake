# Finds the TensorRT C++ headers and sets TENSORRT_HEADERS_DIR (the folder holding NvInfer.h).
# Order: TENSORRT_INCLUDE_DIR, TENSORRT_ROOT/include, a system install, and last the
# TensorRT 10.14 headers inside the pinned third-party wheel kernel-lens==2.0.1 (compile
# checks only; fetched into the build folder, never committed). Only headers are used:
# the plugin library does not link libnvinfer.

set(CCNET_KERNEL_LENS_VERSION "2.0.1")
set(CCNET_KERNEL_LENS_SHA256 "07cc714e8b5e7f34b672f7c7fad93febe7c747be5837ba276b1527370134ffe0")
set(CCNET_KERNEL_LENS_WHEEL "kernel_lens-${CCNET_KERNEL_LENS_VERSION}-py3-none-any.whl")

function(ccnet_find_tensorrt_headers)
    if(TENSORRT_INCLUDE_DIR)
        if(NOT EXISTS "${TENSORRT_INCLUDE_DIR}/NvInfer.h")
            message(FATAL_ERROR "TENSORRT_INCLUDE_DIR=${TENSORRT_INCLUDE_DIR} has no NvInfer.h; point it at the folder holding the TensorRT headers.")
        endif()
        set(TENSORRT_HEADERS_DIR "${TENSORRT_INCLUDE_DIR}" PARENT_SCOPE)
        return()
    endif()
    if(TENSORRT_ROOT)
        if(NOT EXISTS "${TENSORRT_ROOT}/include/NvInfer.h")
            message(FATAL_ERROR "TENSORRT_ROOT=${TENSORRT_ROOT} has no include/NvInfer.h; pass the TensorRT install folder.")
        endif()
        set(TENSORRT_HEADERS_DIR "${TENSORRT_ROOT}/include" PARENT_SCOPE)
        return()
    endif()
    find_path(CCNET_SYSTEM_TENSORRT_INCLUDE NvInfer.h
        PATHS /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/include /usr/local/TensorRT/include
        NO_CACHE)
    if(CCNET_SYSTEM_TENSORRT_INCLUDE)
        set(TENSORRT_HEADERS_DIR "${CCNET_SYSTEM_TENSORRT_INCLUDE}" PARENT_SCOPE)
        return()
    endif()

    # No TensorRT installed: use the headers of the pinned kernel-lens wheel.
    set(deps_dir "${CMAKE_BINARY_DIR}/_deps")
    set(headers_dir "${deps_dir}/kernel_lens/include/tensorrt")
    set(wheel "${deps_dir}/${CCNET_KERNEL_LENS_WHEEL}")
    if(NOT EXISTS "${headers_dir}/NvInfer.h")
        if(NOT EXISTS "${wheel}")
            find_program(CCNET_PYTHON NAMES python3 python
                HINTS "${CMAKE_SOURCE_DIR}/.venv/bin" NO_CACHE)
            if(NOT CCNET_PYTHON)
                message(FATAL_ERROR "No TensorRT headers found and no python to fetch kernel-lens; pass -DTENSORRT_ROOT=<TensorRT install> or -DTENSORRT_INCLUDE_DIR=<folder with NvInfer.h>.")
            endif()
            message(STATUS "Downloading TensorRT headers (kernel-lens==${CCNET_KERNEL_LENS_VERSION}) into ${deps_dir}")
            execute_process(
                COMMAND "${CCNET_PYTHON}" -m pip download --no-deps --disable-pip-version-check
                        "kernel-lens==${CCNET_KERNEL_LENS_VERSION}" -d "${deps_dir}"
                RESULT_VARIABLE pip_result OUTPUT_QUIET ERROR_VARIABLE pip_error)
            if(NOT pip_result EQUAL 0 OR NOT EXISTS "${wheel}")
                message(FATAL_ERROR "Could not download kernel-lens==${CCNET_KERNEL_LENS_VERSION} (${pip_error}); without network pass -DTENSORRT_INCLUDE_DIR=<folder with NvInfer.h> (e.g. a build/_deps/kernel_lens/include/tensorrt copied from a machine with network).")
            endif()
        endif()
        file(SHA256 "${wheel}" wheel_sha256)
        if(NOT wheel_sha256 STREQUAL CCNET_KERNEL_LENS_SHA256)
            file(REMOVE "${wheel}")
            message(FATAL_ERROR "${CCNET_KERNEL_LENS_WHEEL} has sha256 ${wheel_sha256}, expected ${CCNET_KERNEL_LENS_SHA256}; deleted it. Re-run cmake to download it again.")
        endif()
        file(ARCHIVE_EXTRACT INPUT "${wheel}" DESTINATION "${deps_dir}" PATTERNS "kernel_lens/include/tensorrt/*")
        if(NOT EXISTS "${headers_dir}/NvInfer.h")
            message(FATAL_ERROR "${CCNET_KERNEL_LENS_WHEEL} holds no kernel_lens/include/tensorrt/NvInfer.h")
        endif()
    endif()
    set(TENSORRT_HEADERS_DIR "${headers_dir}" PARENT_SCOPE)
endfunction()

# Sets <out_var> to the "major.minor.patch" of the TensorRT headers in <headers_dir>
# (NvInferVersion.h), or "unknown".
function(ccnet_tensorrt_headers_version headers_dir out_var)
    set(version "unknown")
    if(EXISTS "${headers_dir}/NvInferVersion.h")
        file(STRINGS "${headers_dir}/NvInferVersion.h" lines REGEX "#define (TRT|NV_TENSORRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? [0-9]+")
        foreach(part MAJOR MINOR PATCH)
            string(REGEX MATCH "_${part}(_ENTERPRISE)? ([0-9]+)" found "${lines}")
            set(${part} "${CMAKE_MATCH_2}")
        endforeach()
        if(NOT MAJOR STREQUAL "")
            set(version "${MAJOR}.${MINOR}.${PATCH}")
        endif()
    endif()
    set(${out_var} "${version}" PARENT_SCOPE)
endfunction()
