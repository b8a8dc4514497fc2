import pytest

import nnunet_fracture.training.vae_validation as module


@pytest.mark.parametrize("rank, summaries", [(0, 1), (1, 0)])
def test_vae_validation_replaces_nnunets_validation_and_writes_the_error_summary_on_rank_0(monkeypatch, rank,
                                                                                           summaries):
    calls = []
    monkeypatch.setattr(module, "online_validation_step", lambda trainer, batch: calls.append(("step", batch)) or 7)
    monkeypatch.setattr(module, "finish_online_validation", lambda trainer, outputs: calls.append(("end", outputs)))
    monkeypatch.setattr(module, "write_error_summary", lambda trainer: calls.append(("summary", None)))

    class Trainer(module.VAEValidation):
        local_rank = rank

    trainer = Trainer()
    assert trainer.validation_step({"data": 1}) == 7
    trainer.on_validation_epoch_end([{"loss": 2.0}])
    trainer.run_final_validation(save_probabilities=True)
    assert calls[:2] == [("step", {"data": 1}), ("end", [{"loss": 2.0}])]
    assert calls[2:] == [("summary", None)] * summaries
