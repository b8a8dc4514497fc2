from nnunet_fracture.stock_commands import predict_command, predict_workers


def test_predict_command_writes_probabilities_and_turns_mirroring_off_on_request(monkeypatch):
    monkeypatch.delenv("nnUNet_npp", raising=False)
    monkeypatch.delenv("nnUNet_nps", raising=False)
    assert predict_command("img", "out", 501, "nnUNetTrainerWeakBBox", "nnUNetPlansTiny", tta=False) == [
        "nnUNetv2_predict", "-i", "img", "-o", "out", "-d", 501, "-c", "3d_fullres", "-f", "all",
        "-tr", "nnUNetTrainerWeakBBox", "-p", "nnUNetPlansTiny", "-device", "cpu", "--save_probabilities",
        "-npp", "1", "-nps", "1", "--disable_tta"]
    command = predict_command("img", "out", 7, "T", "P", configuration="2d", fold="0", device="cuda")
    assert command[command.index("-c") + 1:command.index("-c") + 4] == ["2d", "-f", "0"]
    assert command[command.index("-device") + 1] == "cuda" and "--disable_tta" not in command


def test_worker_counts_follow_nnunets_own_variables(monkeypatch):
    monkeypatch.setenv("nnUNet_npp", "0")
    monkeypatch.setenv("nnUNet_nps", "2")
    assert predict_workers() == ["-npp", "0", "-nps", "2"]
    command = predict_command("img", "out", 7, "T", "P")
    assert command[command.index("-npp"):command.index("-npp") + 4] == ["-npp", "0", "-nps", "2"]
    monkeypatch.delenv("nnUNet_nps")
    assert predict_workers() == ["-npp", "0", "-nps", "1"]


def test_predict_command_ensembles_several_folds():
    command = predict_command("img", "out", 7, "T", "P", fold=("0", "1"))
    assert command[command.index("-f"):command.index("-tr")] == ["-f", "0", "1"]
