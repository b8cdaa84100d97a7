"""`ccnet serve`: a real Triton server (PyTriton) started as the command line does, on free
loopback ports, with the ccnet-demo model exported to ONNX; every answer is compared with
`Segmenter.segment` on the same real photo."""
from __future__ import annotations

import re
import threading
import urllib.request

import cv2
import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed: pip install -e '.[serve]'")
http = pytest.importorskip("tritonclient.http", reason="pip install -e '.[serve]'")
grpc = pytest.importorskip("tritonclient.grpc", reason="pip install -e '.[serve]'")

from serving_helpers import LOOPBACK, ServeProcess, alive, descendants, free_ports, port_is_free  # noqa: E402,E501

from runtime.serving_contract import BadRequest, request_images  # noqa: E402

InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def segmenter(demo_onnx):
    from runtime import Segmenter

    with Segmenter(demo_onnx, device="cpu") as seg:
        yield seg


@pytest.fixture(scope="module")
def images(photos):
    """Two VOC and two ADE20K photos (decoded BGR) with their file bytes."""
    chosen = photos[:2] + photos[-2:]
    return [(cv2.imread(p), _read_bytes(p)) for p in chosen]


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def server(demo_onnx, tmp_path_factory):
    """`ccnet serve` with the defaults (max batch size 4, one instance), small image limit."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = ServeProcess(demo_onnx, str(log), "--max-image-side", "1024",
                        "--shutdown-timeout", "10", "--log-batches")
    try:
        proc.wait_ready()
        yield proc
    finally:
        status = proc.stop()
        assert status == 0, proc.log_tail()
        assert all(port_is_free(p) for p in proc.ports), f"ports {proc.ports} still bound"


def _http_image(image, batched=True):
    data = image[None] if batched else image
    tensor = http.InferInput("image", list(data.shape), "UINT8")
    tensor.set_data_from_numpy(data)
    return tensor


def _infer_http(url, inputs, outputs=None):
    client = http.InferenceServerClient(url)
    try:
        return client.infer("ccnet", inputs, outputs=outputs)
    finally:
        client.close()


# ----------------------------------------------------------------------------- contract (no server)
def test_request_images_checks_each_input():
    image = np.zeros((1, 6, 8, 3), np.uint8)
    assert request_images(image, None, batched=True)[0].shape == (6, 8, 3)
    _, png = cv2.imencode(".png", image[0])
    decoded = request_images(None, np.array([[png.tobytes()]], dtype=object), batched=True)
    assert np.array_equal(decoded[0], image[0])
    cases = [((None, None), "exactly one"), ((image, np.array([[b"x"]], dtype=object)), "exactly one"),
             ((image.astype(np.float32), None), "must be UINT8"), ((image[0, :, :, 0], None), "[N, H, W, 3]"),
             ((None, np.array([[b""]], dtype=object)), "is empty"),
             ((None, np.array([[b"not an image"]], dtype=object)), "not a decodable image"),
             ((np.zeros((1, 4, 20, 3), np.uint8), None), "larger than this server allows")]
    for (img, enc), reason in cases:
        with pytest.raises(BadRequest) as info:
            request_images(img, enc, batched=True, max_side=16)
        assert reason in str(info.value) and "\n" not in str(info.value)


def test_an_image_over_the_pixel_limit_is_a_bad_request(monkeypatch):
    from ccnet.meta import LIMITS

    monkeypatch.setattr(LIMITS, "max_image_pixels", 6 * 8 - 1)  # within max_side, one pixel over
    with pytest.raises(BadRequest, match=r"^image is 8x6 = 48 pixels") as info:
        request_images(np.zeros((6, 8, 3), np.uint8), None, batched=False, max_side=16)
    assert "\n" not in str(info.value)


def test_model_callable_names_the_bad_request_of_a_batch(segmenter):
    from pytriton.proxy.types import Request

    from runtime.serving import SegmentationModel, ServeOptions

    model = SegmentationModel(segmenter, ServeOptions())
    good = Request({"image": np.zeros((1, 32, 48, 3), np.uint8)}, requested_output_names=["labels"])
    answer = model([good])[0]["labels"]
    assert answer.shape == (1, 32, 48) and answer.dtype == np.uint8
    bad = Request({"encoded": np.array([[b""]], dtype=object)})
    with pytest.raises(BadRequest, match=r"^request 2 of 2 in this batch: 'encoded' is empty"):
        model([good, bad])


def test_model_callable_without_batch_dimension_returns_logits_on_request(segmenter, images):
    from pytriton.proxy.types import Request

    from runtime.serving import SegmentationModel, ServeOptions

    image = images[0][0]
    model = SegmentationModel(segmenter, ServeOptions(max_batch_size=0, logits=True))
    both = model([Request({"image": image}, requested_output_names=["labels", "logits"]),
                  Request({"image": image}, requested_output_names=["labels"])])
    prediction = segmenter.predict(image)
    np.testing.assert_array_equal(both[0]["labels"], prediction.labels)
    np.testing.assert_array_equal(both[0]["logits"], prediction.logits)
    assert set(both[1]) == {"labels"}


def test_logits_from_a_label_head_model_are_refused_before_triton_starts(demo_head_onnx):
    from ccnet.errors import CCNetError
    from runtime.serving import SegmentationServer, ServeOptions

    server = SegmentationServer(demo_head_onnx, ServeOptions(logits=True), device="cpu")
    with pytest.raises(CCNetError, match=r"label head.*without --logits") as info:
        server._load_segmenters()
    assert "\n" not in str(info.value) and server.segmenters == []


def test_libpython_folder_goes_first_and_is_restored():
    import sysconfig

    from runtime.serving import explain_start_failure, interpreter_libpython_first

    libdir = sysconfig.get_config_var("LIBDIR")
    env = {"LD_LIBRARY_PATH": f"/opt/other:{libdir}"}
    with interpreter_libpython_first(env):
        assert env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/other"
    assert env["LD_LIBRARY_PATH"] == f"/opt/other:{libdir}"
    stub_error = Exception("load failed: AttributeError: '_thread.RLock' object has no attribute "
                           "'_recursion_count'\nAt: model.py")
    reason = explain_start_failure(stub_error, "ccnet")
    assert "libpython" in reason and "\n" not in reason


def test_cli_refuses_a_busy_port_before_loading_anything(demo_onnx, capsys):
    import socket

    from cli.main import main

    http_port, grpc_port, metrics_port = free_ports(3)
    with socket.socket() as busy:
        busy.bind((LOOPBACK, grpc_port))
        busy.listen(1)
        status = main(["serve", "--model", demo_onnx, "--address", LOOPBACK, "--http-port",
                       str(http_port), "--grpc-port", str(grpc_port), "--metrics-port",
                       str(metrics_port)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err == (f"error: port {grpc_port} (--grpc-port) is in use on "
                                   f"{LOOPBACK}: stop what holds it or pick another --grpc-port")
    assert main(["serve", "--model", "missing.onnx", "--http-port", str(http_port),
                 "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
                 "--address", LOOPBACK]) == 2
    assert "ONNX model not found: missing.onnx" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real server
def test_model_config_is_the_documented_contract(server):
    client = grpc.InferenceServerClient(server.grpc_url)
    try:
        config = client.get_model_config("ccnet", as_json=True)["config"]
    finally:
        client.close()
    inputs = {t["name"]: (t["data_type"], t["dims"], t.get("optional")) for t in config["input"]}
    outputs = {t["name"]: (t["data_type"], t["dims"]) for t in config["output"]}
    assert config["max_batch_size"] == 4 and "dynamic_batching" in config
    assert inputs == {"image": ("TYPE_UINT8", ["-1", "-1", "3"], True),
                      "encoded": ("TYPE_STRING", ["1"], True)}
    assert outputs == {"labels": ("TYPE_UINT8", ["-1", "-1"])}  # logits off by default


def test_http_answers_equal_segmenter(server, segmenter, images):
    for image, _ in images:
        labels = _infer_http(server.http_url, [_http_image(image)]).as_numpy("labels")
        assert labels.dtype == np.uint8 and labels.shape == (1,) + image.shape[:2]
        np.testing.assert_array_equal(labels[0], segmenter.segment(image))


def test_grpc_image_and_encoded_equal_segmenter(server, segmenter, images):
    client = grpc.InferenceServerClient(server.grpc_url)
    try:
        for image, data in images[1:3]:
            expected = segmenter.segment(image)
            pixels = grpc.InferInput("image", [1, *image.shape], "UINT8")
            pixels.set_data_from_numpy(image[None])
            encoded = grpc.InferInput("encoded", [1, 1], "BYTES")
            encoded.set_data_from_numpy(np.array([[data]], dtype=object))
            for tensor in (pixels, encoded):
                labels = client.infer("ccnet", [tensor]).as_numpy("labels")
                np.testing.assert_array_equal(labels[0], expected)
    finally:
        client.close()


def test_four_concurrent_clients_of_mixed_sizes(server, segmenter, images):
    """4 clients × 10 requests; the clients move through the sizes together, so the dynamic
    batcher sees same-size requests queued at once (batched) and other sizes between them."""
    sizes = [(320, 240), (240, 320), None, (500, 281)]  # (w, h); None: the photo as it is
    distinct = [image if size is None else cv2.resize(image, size)
                for image, _ in images[1:3] for size in sizes]
    references = [segmenter.segment(image) for image in distinct]
    results = {}
    errors = []

    def client_loop(worker: int):
        client = http.InferenceServerClient(server.http_url)
        try:
            for step in range(10):
                image = distinct[step % len(distinct)]
                result = client.infer("ccnet", [_http_image(image)])
                results[worker, step] = result.as_numpy("labels")[0]
        except Exception as e:  # reported below, with the worker
            errors.append(f"client {worker}: {e}")
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    assert len(results) == 40
    for (worker, step), labels in results.items():
        assert np.array_equal(labels, references[step % len(distinct)]), (worker, step)
    counters = _model_counters(server.metrics_port)  # fewer executions than requests: batches
    assert counters["exec_count"] < counters["request_success"], \
        f"no batch of several requests formed: {counters}"


def test_bad_requests_are_answered_and_the_server_keeps_serving(server, segmenter, images):
    def tensor(name, dtype, data):
        t = http.InferInput(name, list(data.shape), dtype)
        t.set_data_from_numpy(data)
        return t

    good = _http_image(images[0][0])
    bad = {  # request -> expected one-line reason (Triton's own check, or the front model's)
        "float pixels": ([tensor("image", "FP32", np.zeros((1, 8, 8, 3), np.float32))],
                         "data-type is 'FP32', but model 'ccnet' expects 'UINT8'"),
        "2-D image": ([tensor("image", "UINT8", np.zeros((1, 8, 8), np.uint8))],
                      "unexpected shape for input 'image'"),
        "empty bytes": ([tensor("encoded", "BYTES", np.array([[b""]], dtype=object))],
                        "'encoded' is empty"),
        "undecodable bytes": ([tensor("encoded", "BYTES", np.array([[b"GIF89a?"]], dtype=object))],
                              "is not a decodable image"),
        "too large": ([tensor("image", "UINT8", np.zeros((1, 4, 1025, 3), np.uint8))],
                      "image 1025x4 is larger than this server allows (longest side 1024)"),
        "both inputs": ([good, tensor("encoded", "BYTES", np.array([[images[0][1]]], dtype=object))],
                        "send exactly one of the inputs"),
    }
    for what, (inputs, reason) in bad.items():
        with pytest.raises(InferenceServerException) as info:
            _infer_http(server.http_url, inputs)
        message = info.value.message()
        assert reason in message and "\n" not in message.strip(), f"{what}: {message}"
    client = http.InferenceServerClient(server.http_url)
    try:
        assert client.is_server_ready() and client.is_model_ready("ccnet")
    finally:
        client.close()
    labels = _infer_http(server.http_url, [good]).as_numpy("labels")
    np.testing.assert_array_equal(labels[0], segmenter.segment(images[0][0]))


def test_sigterm_lets_the_request_in_flight_finish_and_frees_ports(server, segmenter, images):
    """Last test of the module: it stops the module's server.  SIGTERM while a request of four
    images is being segmented: the request is answered, the process exits 0, the processes it
    started are gone and the ports are free."""
    children = descendants(server.process.pid)
    assert children, "ccnet serve started no server process"
    frame = cv2.resize(images[2][0], (1024, 768))
    frames = np.stack([frame, frame[:, ::-1], frame[::-1], frame[::-1, ::-1]])
    answer = {}

    def request():
        tensor = http.InferInput("image", list(frames.shape), "UINT8")
        tensor.set_data_from_numpy(frames)
        answer["labels"] = _infer_http(server.http_url, [tensor]).as_numpy("labels")

    worker = threading.Thread(target=request)
    worker.start()
    server.wait_for_log("batch: 1 request(s), 4 image(s) 1024x768")
    status = server.stop()
    worker.join(60)
    assert status == 0, server.log_tail()
    assert "labels" in answer, "the request in flight got no answer"
    for got, image in zip(answer["labels"], frames):
        np.testing.assert_array_equal(got, segmenter.segment(np.ascontiguousarray(image)))
    assert not [pid for pid in children if alive(pid)], "server processes left running"
    assert all(port_is_free(p) for p in server.ports), f"ports {server.ports} still bound"


@pytest.mark.slow
def test_unbatched_two_instances_with_logits(demo_onnx, segmenter, images, tmp_path):
    """No batch dimension, two model instances, the logits output, through a real server."""
    proc = ServeProcess(demo_onnx, str(tmp_path / "serve.log"), "--max-batch-size", "0",
                        "--instances", "2", "--logits", "--shutdown-timeout", "10")
    try:
        proc.wait_ready()
        image = images[2][0]
        result = _infer_http(proc.http_url, [_http_image(image, batched=False)],
                             [http.InferRequestedOutput("labels"),
                              http.InferRequestedOutput("logits")])
        prediction = segmenter.predict(image)
        np.testing.assert_array_equal(result.as_numpy("labels"), prediction.labels)
        np.testing.assert_array_equal(result.as_numpy("logits"), prediction.logits)
    finally:
        assert proc.stop() == 0, proc.log_tail()
    assert all(port_is_free(p) for p in proc.ports)


def _model_counters(metrics_port: int) -> dict:
    """Triton's Prometheus counters of model ``ccnet``."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port}/metrics") as page:
        found = re.findall(r'^nv_inference_(\w+)\{model="ccnet",version="1"\} (\d+)',
                           page.read().decode(), re.M)
    return {name: int(value) for name, value in found}


def test_a_bad_request_does_not_fail_its_batch(demo_onnx, segmenter, images, tmp_path):
    """Four `encoded` requests held together by the batcher (one second of delay), one of them
    empty: the three good ones get their labels, the bad one its one-line reason."""
    proc = ServeProcess(demo_onnx, str(tmp_path / "serve.log"), "--batch-delay-us", "1000000",
                        "--shutdown-timeout", "10")
    try:
        proc.wait_ready()
        payloads = [images[0][1], images[1][1], b"", images[2][1]]
        answers, start = {}, threading.Barrier(len(payloads))

        def request(index):
            tensor = http.InferInput("encoded", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[payloads[index]]], dtype=object))
            start.wait()
            try:
                answers[index] = _infer_http(proc.http_url, [tensor]).as_numpy("labels")[0]
            except InferenceServerException as e:
                answers[index] = e.message()

        threads = [threading.Thread(target=request, args=(i,)) for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert answers[2] == "'encoded' is empty: send the bytes of a JPEG or PNG file"
        for index, photo in ((0, 0), (1, 1), (3, 2)):
            np.testing.assert_array_equal(answers[index], segmenter.segment(images[photo][0]))
        counters = _model_counters(proc.metrics_port)
        assert counters["exec_count"] == 1, f"the four requests were not one batch: {counters}"
    finally:
        assert proc.stop() == 0, proc.log_tail()
