"""io.json_files: one reader of JSON objects, with errors that name the file and the fix."""
import pytest

from nnunet_fracture.io.json_files import read_json_object


def test_objects_are_read_and_anything_else_is_named(tmp_path):
    (tmp_path / "ok.json").write_text('{"a": [1, 2]}')
    assert read_json_object(tmp_path / "ok.json") == {"a": [1, 2]}
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list.json does not hold a JSON object but list. Fix: rewrite it"):
        read_json_object(tmp_path / "list.json", "rewrite it")
    (tmp_path / "bad.json").write_text('{"a": ')
    with pytest.raises(ValueError, match=r"bad.json is not valid JSON \(.*\)$"):
        read_json_object(tmp_path / "bad.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not a text"):
        read_json_object(tmp_path / "binary.json")
    with pytest.raises(FileNotFoundError):
        read_json_object(tmp_path / "missing.json")
