import subprocess

import pytest

from nnunet_fracture.cli import build_parser, main
from nnunet_fracture.trainer_discovery import trainer_path

VERBS = ["phantom", "convert", "trainer-path", "tiny-plans", "evaluate"]


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
