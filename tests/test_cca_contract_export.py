"""Both sides of the op contract agree for real: every CrissCrossAttention node that ccnet-export
writes carries exactly the plugin creator's fields. Separate from tests/test_plugin_host.py
because it runs the ONNX exporter, which the device script leaves out."""
from __future__ import annotations

import json

from plugin_helpers import plugin_build, run_driver


def test_exported_node_attributes_are_the_creator_fields(tiny_onnx):
    """Names, string type and values of the node attributes equal the creator's fields, and the
    node's domain is the plugin namespace the ONNX parser looks up."""
    import onnx

    from export import cca_nodes

    library, driver = plugin_build("cpu")
    described = json.loads(run_driver(driver, library, "describe").stdout)
    creator_fields = {f["name"] for f in described["fields"]}
    nodes = cca_nodes(onnx.load(tiny_onnx))
    assert nodes
    for node in nodes:
        assert node.op_type == described["name"] and node.domain == described["namespace"]
        assert {a.name for a in node.attribute} == creator_fields
        for attr in node.attribute:
            assert attr.type == onnx.AttributeProto.STRING
        values = {a.name: a.s.decode() for a in node.attribute}
        assert values == {"plugin_version": described["version"],
                          "plugin_namespace": described["namespace"]}
