import subprocess

import pytest

from nnunet_fracture.cli import build_parser, main
from nnunet_fracture.trainer_discovery import trainer_path

VERBS = ["phantom", "convert", "trainer-path", "tiny-plans", "evaluate", "pseudo-masks", "visualize", "reorient",
         "fuse", "attention-maps", "vae-error", "self-train"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert "usage: nnunet-fracture " + verb in capsys.readouterr().out


def test_top_level_help_lists_every_verb():
    text = build_parser().format_help()
    for verb in VERBS:
        assert verb in text


def test_trainer_path_is_the_shim_folder(capsys):
    assert main(["trainer-path"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(trainer_path())
    assert (trainer_path() / "nnunet_fracture_trainer_shim.py").is_file()


def test_console_script_prints_trainer_path():
    from nnunet_fracture.stock_commands import find_command

    result = subprocess.run([find_command("nnunet-fracture"), "trainer-path"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == str(trainer_path())


def test_missing_ext_trainer_says_what_to_export(monkeypatch, capsys):
    from nnunet_fracture.environment import ext_trainer_problem

    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    expected = f"export nnUNet_extTrainer=$(nnunet-fracture trainer-path)   # = {trainer_path()}"
    assert expected in ext_trainer_problem()
    monkeypatch.setenv("nnUNet_extTrainer", "/somewhere/else")
    assert "does not list the plugin's trainer folder" in ext_trainer_problem()
    monkeypatch.setenv("nnUNet_extTrainer", f"/somewhere/else:{trainer_path()}")
    assert ext_trainer_problem() is None


def test_commands_before_training_remind_about_ext_trainer(nnunet_env, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("nnUNet_extTrainer")
    # a failing tiny-plans still reports its own error first and no reminder
    assert main(["tiny-plans", "999"]) == 1
    assert "nnUNet_extTrainer" not in capsys.readouterr().err
    images = tmp_path / "in" / "images"
    images.mkdir(parents=True)
    import SimpleITK as sitk

    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkInt16), str(images / "case1.nii.gz"))
    (tmp_path / "in" / "boxes.csv").write_text("case_id,x_min,y_min,z_min,x_max,y_max,z_max,space\n")
    assert main(["convert", "generic", str(tmp_path / "in"), "--dataset-id", "42", "--name", "Tiny"]) == 0
    assert "export nnUNet_extTrainer=$(nnunet-fracture trainer-path)" in capsys.readouterr().err


def test_system_errors_are_one_line_with_the_file_and_a_fix(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # a file where the phantom's output folder should go
    assert main(["phantom", str(blocker / "out"), "--cases", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("nnunet-fracture phantom: error: ") and "a_file" in err and "Fix: " in err


@pytest.mark.skipif(not hasattr(__import__("resource"), "RLIMIT_FSIZE"), reason="needs POSIX file-size limits")
def test_a_write_cut_by_a_file_size_limit_fails_and_leaves_nothing(tmp_path):
    """Under ``ulimit -f 8`` SimpleITK cut the phantom's CTs at 8 KB and the verb said "wrote" and exited 0."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, "-c", "import sys; from nnunet_fracture.cli import main; sys.exit(main())",
                           "phantom", str(tmp_path / "out"), "--cases", "1", "--spacing", "3", "3", "3"],
                          capture_output=True, text=True, preexec_fn=limit)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-800:]
    err = done.stderr.strip().splitlines()[-1]  # (tqdm's progress bar comes before it)
    assert err.startswith("nnunet-fracture phantom: error: ") and ".nii.gz" in err and "Fix: " in err
    assert list(tmp_path.iterdir()) == []  # no output folder, no hidden staging folder


def test_os_error_messages_by_errno():
    import errno

    from nnunet_fracture.cli import os_error_message

    assert os_error_message(OSError(errno.ENOSPC, "No space left on device", "/data/x.nii.gz")) == (
        "No space left on device: /data/x.nii.gz. Fix: the disk is full; free space or choose another --out.")
    assert os_error_message(FileExistsError("out exists; pass --overwrite")) == "out exists; pass --overwrite"


@pytest.mark.parametrize("verb, call", [("self-train", "nnunet_fracture.self_training.self_train"),
                                        ("pseudo-masks", "nnunet_fracture.inference.pseudo_masks.write_pseudo_masks")])
def test_the_round_label_options_reach_the_package(verb, call, monkeypatch, tmp_path):
    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(call, record)
    extra = ["--first-id", "510"] if verb == "self-train" else ["--export-dataset", "510"]
    argv = [verb, str(tmp_path), "--dataset", "501", "--out", str(tmp_path / "o"), "--name", "S", *extra,
            "--ignore-ring", "2", "--inside-vertebra", "1.5", "--ignore-faint-boxes", "100", "--dark-lesions", "100",
            "--ignore-dark-margin", "2"]
    with pytest.raises(SystemExit):
        main(argv)
    options = seen["options"]
    assert options.ignore_ring == 2 and options.inside_vertebra == 1.5 and options.ignore_faint == 100.0
    assert options.dark_lesions == 100.0 and options.ignore_dark_margin == 2
