"""Write the hostile-file regressions in this folder from the bundled fixtures (deterministic; rerun it
after changing a fixture: ``python tests/regressions/make_regressions.py``).

Each file is one input that once made kcompat fail badly (an internal error, a hang, NumPy's 'Unable to
allocate', a wrong success), named for what it is; cases.json lists the command to run on it and words
the single ``kcompat: error:`` line must contain. tests/test_regressions.py runs them all. The fuzz
harness (tests/fuzz_run.py) finds new ones: add each here, small, with the words of its fixed error.
"""
from __future__ import annotations

import bz2
import json
import shutil
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the fuzz harness's zip writer
from fuzz_mutate import append_member  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent.parent / "fixtures"
CASES: list[dict] = []


def case(name: str, words: list[str], command: str = "summary", extra: list[str] | None = None) -> Path:
    """Register regression file ``name``: ``kcompat <command> <name> <extra>`` must fail naming ``words``."""
    CASES.append({"file": name, "argv": [command, name, *(extra or [])], "words": words})
    return HERE / name


def json_config(src: str, name: str, words: list[str], edit) -> None:
    config = json.loads((FIXTURES / src).read_text())
    edit(config)
    case(name, words).write_text(json.dumps(config) if not isinstance(config, str) else config)


def layer(config: dict, name: str) -> dict:
    return next(l for l in config["config"]["layers"] if l.get("name", l["config"].get("name")) == name)


def main() -> None:
    for old in HERE.glob("*"):
        if old.name not in ("make_regressions.py", "README.md"):
            old.unlink()
    k2, k3 = "keras2/faq_dense_first.json", "keras3/merge_branches.json"
    # config values of the wrong type, where Keras has a node index, a tensor, a name
    json_config(k2, "k2_node_index_is_a_list.json", ["layer 'D16'", "node index", "Received"],
                lambda c: layer(c, "D16")["inbound_nodes"][0][0].__setitem__(1, [0]))
    json_config(k3, "k3_keras_tensor_is_an_int.json", ["layer 'branch_a'", "keras_history", "Received"],
                lambda c: layer(c, "branch_a")["inbound_nodes"][0]["args"][0]["config"].__setitem__("keras_history", 7))
    json_config(k3, "k3_arg_is_an_int.json", ["layer 'branch_a'"],  # an int argument: not a tensor
                lambda c: layer(c, "branch_a")["inbound_nodes"][0].__setitem__("args", [7]))
    json_config(k3, "k3_input_is_not_a_keras_tensor.json", ["layer 'branch_a'", "its input must be a tensor"],
                lambda c: layer(c, "branch_a")["inbound_nodes"][0]["args"][0].__setitem__("class_name", "relu"))
    json_config(k2, "layer_name_is_a_float.json", ["'name' must be a string", "Received: name=3.25"],
                lambda c: layer(c, "A").__setitem__("name", 3.25))
    json_config(k2, "units_10_pow_100.json", ["layer 'D16'", "'units'", "Received: units=1000"],
                lambda c: layer(c, "D16")["config"].__setitem__("units", 10**100))
    json_config(k2, "layer_reads_its_own_output.json", ["layer 'A' reads its own output"],
                lambda c: layer(c, "A")["inbound_nodes"][0][0].__setitem__(0, "A"))
    json_config(k2, "two_layers_read_each_other.json", ["on a cycle"],
                lambda c: layer(c, "D16")["inbound_nodes"][0][0].__setitem__(0, "A"))
    json_config("keras3/faq_flatten_first.json", "dtype_config_is_an_int.json", ["'dtype.config' must be a dict"],
                lambda c: c["config"]["layers"][1]["config"]["dtype"].__setitem__("config", -7))
    def long_name(c):  # a 4,000-character layer name in an error: the line is cut in the middle
        d16 = layer(c, "D16")
        d16["name"] = d16["config"]["name"] = "relu" * 1000
        d16["config"]["units"] = -1
        layer(c, "A")["inbound_nodes"][0][0][0] = "relu" * 1000
    json_config(k2, "layer_name_of_4000_characters.json", ["[...]", "Received: units=-1"], long_name)
    deep = "[" * 1000 + "0" + "]" * 1000
    case("json_1000_deep.json", ["nests"]).write_text(
        (FIXTURES / k2).read_text().replace('"trainable": true', f'"trainable": {deep}', 1))
    # HDF5: a model_config that is an array, weights that are links / compound / strings / huge
    src = FIXTURES / "keras2" / "faq_dense_first.h5"
    path = case("model_config_is_an_array.h5", ["'model_config' must be a string"])
    shutil.copyfile(src, path)
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = np.arange(6.0)
    for name, words, edit in [
        ("weight_is_a_soft_link_to_a_group.h5", ["kernel:0", "soft link"],
         lambda g, leaf: g.__setitem__(leaf, h5py.SoftLink("/model_weights"))),
        ("weight_is_an_external_link.h5", ["kernel:0", "external link"],
         lambda g, leaf: g.__setitem__(leaf, h5py.ExternalLink("/etc/passwd", "/x"))),
        ("weight_is_compound.h5", ["kernel:0", "dataset of numbers", "dtype"],
         lambda g, leaf: g.create_dataset(leaf, shape=(2, 16), dtype=[("a", "<i4"), ("b", "<f4")])),
        ("weight_is_strings.h5", ["kernel:0", "dataset of numbers", "dtype"],
         lambda g, leaf: g.create_dataset(leaf, data=np.full((2, 16), b"abc"))),
        ("weight_claims_4_tib.h5", ["kernel:0", "needs 4.0 TiB"],
         lambda g, leaf: g.create_dataset(leaf, shape=(2**20, 2**20), dtype="f4", chunks=(16, 16))),
        ("weight_stored_in_etc_hostname.h5", ["kernel:0", "stored in other files"],
         lambda g, leaf: g.create_dataset(leaf, shape=(2, 16), dtype="u1", external=[("/etc/hostname", 0, 32)])),
    ]:
        path = case(name, words, "run", ["-i", "faq_input.npy", "-o", "out.npy"])
        shutil.copyfile(src, path)
        with h5py.File(path, "r+") as f:
            group = f["model_weights/D16/D16"]
            del group["kernel:0"]
            edit(group, "kernel:0")
    np.save(HERE / "faq_input.npy", np.ones((2, 3, 2), np.float32))
    # a damaged symbol table: libhdf5's RuntimeError "bad symbol table node signature"
    data = bytearray(src.read_bytes())
    at = data.find(b"SNOD")
    data[at:at + 4] = b"XXXX"
    case("bad_symbol_table_node.h5", ["corrupt"]).write_bytes(bytes(data))
    # found by the fuzz harness: a zeroed KiB that makes libhdf5 spin reading the model_config attribute
    # after its symbol table fails (the probe must go on past a failure); a MatMul by a vector whose output
    # only a concrete batch shows cannot be reshaped as the graph says
    data = bytearray((FIXTURES / "keras3" / "mnist_cnn.h5").read_bytes())
    data[5888:6912] = bytes(1024)
    case("zeroed_block_spins_on_model_config.h5", ["did not finish"]).write_bytes(bytes(data))
    import onnx
    model = onnx.load(str(FIXTURES / "onnx" / "dense_3d.keras_export.onnx"))
    next(n for n in model.graph.node if n.name == "dense_3d_1/proj_1/BiasAdd").op_type = "MatMul"
    onnx.save(model, str(HERE / "matmul_by_a_vector_then_reshape.onnx"))
    np.save(HERE / "tokens.npy", np.ones((2, 5, 8), np.float32))
    CASES.append({"file": "matmul_by_a_vector_then_reshape.onnx",
                  "argv": ["run", "matmul_by_a_vector_then_reshape.onnx", "-i", "tokens.npy", "-o", "o.npz"],
                  "words": ["layer 'flat' (Reshape)", "cannot run on inputs of shape [(2, 5)]"]})
    # .npy inputs: a header with flipped bits, a header claiming 4 TiB
    good = (HERE / "faq_input.npy").read_bytes()
    flipped = bytearray(good)
    flipped[good.index(b"(")] ^= 0x08  # '(' -> ' ': the tuple's opening bracket gone
    (HERE / "header_flipped.npy").write_bytes(bytes(flipped))
    CASES.append({"file": "header_flipped.npy", "argv": ["run", "faq.keras", "-i", "header_flipped.npy", "-o", "o.npy"],
                  "words": ["header_flipped.npy", "corrupt header"]})
    old, new = b"(2, 3, 2), }", b"(9999999, 3, 2), }"  # 229 MiB claimed; the header's padding absorbs it
    big = good.replace(old + b" " * (len(new) - len(old)), new)
    assert len(big) == len(good)
    (HERE / "header_claims_more_than_the_file.npy").write_bytes(big)
    CASES.append({"file": "header_claims_more_than_the_file.npy",
                  "argv": ["run", "faq.keras", "-i", "header_claims_more_than_the_file.npy", "-o", "o.npy"],
                  "words": ["claims shape (9999999, 3, 2)", "truncated"]})
    np.save(HERE / "no_samples.npy", np.ones((0, 3, 2), np.float32))  # a batch of 0: Flatten could not reshape it
    # (not a failing case: as in Keras, a batch of 0 runs; test_regressions.py checks it)
    shutil.copyfile(FIXTURES / "keras3" / "faq_dense_first.keras", HERE / "faq.keras")
    # zip: a bzip2 member of 4 GiB from 45 bytes; a weights member escaping the folder by name
    with zipfile.ZipFile(FIXTURES / "keras3" / "faq_dense_first.keras") as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    for bomb in ("config.json", "model.weights.h5"):
        path = case(f"bzip2_bomb_{bomb.split('.')[0]}.keras", [bomb, "claims 4.0 GiB"])
        with zipfile.ZipFile(path, "w") as out:
            for name in ("metadata.json", "config.json", "model.weights.h5"):
                if name != bomb:
                    out.writestr(name, members[name])
        append_member(path, bomb, bz2.compress(bytes(1 << 24), 9), (4 << 30) - 1, zipfile.ZIP_BZIP2)
    path = case("weights_member_named_dot_dot.keras", ["no model.weights.h5"])
    with zipfile.ZipFile(path, "w") as out:
        for name, data in members.items():
            out.writestr("../model.weights.h5" if name == "model.weights.h5" else name, data)
    # ONNX: a Reshape target of 2**62, an initializer claiming 2**40 elements, external data outside
    model = onnx.load(str(FIXTURES / "onnx" / "dense_3d.tf2onnx.onnx"))
    _reshape_to(model, [2**62, -1])
    onnx.save(model, str(case("reshape_to_2_pow_62.onnx", ["4611686018427387904"])))
    model = onnx.load(str(FIXTURES / "onnx" / "mlp.keras_export.onnx"))
    model.graph.initializer[0].dims[0] = 2**40
    onnx.save(model, str(case("initializer_claims_2_pow_40.onnx", ["claims shape"])))
    model = onnx.load(str(FIXTURES / "onnx" / "mlp.keras_export.onnx"))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "64")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(case("external_data_outside_the_folder.onnx", ["outside the model's folder"])))
    (HERE / "cases.json").write_text(json.dumps(CASES, indent=1) + "\n")


def _reshape_to(model, target: list[int]) -> None:
    """Make the graph's first Reshape reshape to ``target`` (a new initializer)."""
    from onnx import numpy_helper
    node = next(n for n in model.graph.node if n.op_type == "Reshape")
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(target, np.int64), "fuzz_target"))
    node.input[1] = "fuzz_target"


if __name__ == "__main__":
    main()
