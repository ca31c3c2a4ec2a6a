"""serving/rest.py, TF Serving's REST JSON, without HTTP: both request forms against the
serving signature's real TensorSpecs, the answers, and the 400s for malformed requests."""
import base64

import numpy as np
import pytest
import tensorflow as tf

from serving import rest

SPECS = {"image_bytes": tf.TensorSpec([None], tf.string, "image_bytes"),
         "box": tf.TensorSpec([None, 4], tf.float32, "box")}


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def test_rows_and_columns_give_the_same_tensors():
    rows, row_format = rest.request_tensors({"instances": [
        {"image_bytes": b64(b"\x89PNG one"), "box": [1, 2, 3, 4]},
        {"image_bytes": b64(b"two"), "box": [5, 6, 7.5, 8]}]}, SPECS)
    columns, column_format = rest.request_tensors({"inputs": {
        "image_bytes": [b64(b"\x89PNG one"), b64(b"two")],
        "box": [[1, 2, 3, 4], [5, 6, 7.5, 8]]}}, SPECS)
    assert row_format and not column_format
    for tensors in (rows, columns):
        assert list(tensors["image_bytes"]) == [b"\x89PNG one", b"two"]
        np.testing.assert_array_equal(tensors["box"], [[1, 2, 3, 4], [5, 6, 7.5, 8]])
        assert tensors["box"].dtype == np.float32
    # one input: the bare value stands for {name: value}
    single = {"x": tf.TensorSpec([None, 2], tf.int32, "x")}
    bare, _ = rest.request_tensors({"instances": [[1, 2], [3, 4]]}, single)
    np.testing.assert_array_equal(bare["x"], [[1, 2], [3, 4]])


def test_answers_in_the_form_of_the_request():
    outputs = {"landmarks": np.zeros((2, 1, 2), np.float32),
               "stage_spread": np.array([0.5, 0.25], np.float32)}
    assert rest.answer_json(outputs, row_format=True) == {"predictions": [
        {"landmarks": [[0.0, 0.0]], "stage_spread": 0.5},
        {"landmarks": [[0.0, 0.0]], "stage_spread": 0.25}]}
    assert rest.answer_json(outputs, row_format=False) == {"outputs": {
        "landmarks": [[[0.0, 0.0]], [[0.0, 0.0]]], "stage_spread": [0.5, 0.25]}}
    assert rest.answer_json({"name": np.array([b"\x00\xff"], object)}, False) == {
        "outputs": [{"b64": "AP8="}]}


@pytest.mark.parametrize("body, words", [
    ([], "must be a JSON object"),
    ({"instances": [], "inputs": {}}, "Not allowed to have both"),
    ({"instances": []}, "non-empty list"),
    ({"instances": [{"box": [1, 2, 3, 4]}]}, "instance 0: missing input 'image_bytes'"),
    ({"instances": [{"image_bytes": "a", "box": [1, 2, 3, 4], "x": 1}]}, "unknown input 'x'"),
    ({"instances": [{"image_bytes": {"b64": 1}, "box": [1, 2, 3, 4]}]}, "b64"),
    ({"instances": [{"image_bytes": "a", "box": [1, 2, 3, True]}]}, "expected float32 numbers"),
    ({"instances": [{"image_bytes": "a", "box": [[1, 2], [3]]}]}, "not a rectangular"),
    ({"inputs": {"image_bytes": ["a", "b"], "box": [[1, 2, 3, 4]]}}, "different batch sizes"),
    ({"inputs": {"image_bytes": ["a"], "box": [1, 2, 3, 4]}}, "shape [4] does not match"),
])
def test_malformed_requests_are_400s_that_say_why(body, words):
    with pytest.raises(rest.RequestError) as info:
        rest.request_tensors(body, SPECS)
    assert info.value.status == 400 and words in info.value.message
