"""Hardware choices for training (only the device query is mocked) and the step clock."""

from __future__ import annotations

import pytest
import torch

from newsclf.errors import InputError

# -- training on CUDA (issue 10): only the device query is mocked --------------------------------


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_training_on_cuda_picks_precision_and_attention(
    monkeypatch, bf16: bool, expected: str
) -> None:  # type: ignore[no-untyped-def]
    from newsclf.training import hardware_setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    setup = hardware_setup("auto")
    assert setup.device.type == "cuda" and setup.precision == expected
    assert setup.disable_cudnn_attention and setup.pad_to_multiple_of == 8
    assert setup.optimizer == "adamw_torch_fused"
    assert hardware_setup("fp32").precision == "fp32"  # an explicit choice stands
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with setup.attention():
        assert torch.backends.cuda.cudnn_sdp_enabled() is False
    assert torch.backends.cuda.cudnn_sdp_enabled() is before


def test_training_on_the_cpu_keeps_cudnn_settings_and_refuses_fp16(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsclf.training import hardware_setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    setup = hardware_setup("auto")
    assert setup.device.type == "cpu" and not setup.disable_cudnn_attention
    assert setup.pad_to_multiple_of is None and setup.optimizer == "adamw_torch"
    assert setup.precision in ("bf16", "fp32")
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        hardware_setup("fp16")


def test_step_clock_leaves_out_the_first_fifth_and_evaluations(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    import newsclf.training.trainer as trainer

    clock = trainer.StepClock(samples_per_step=32)
    now = [0.0]
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: now[0])
    # Ten steps: the first two slow (10 s each), then 1 s each; a 5 s evaluation after step 6.
    for step in range(1, 11):
        now[0] += 10.0 if step <= 2 else 1.0
        clock.on_step_end(None, SimpleNamespace(global_step=step), None)  # type: ignore[arg-type]
        if step == 6:
            clock.on_evaluate(None, None, None, metrics={"eval_runtime": 5.0})  # type: ignore[arg-type]
            now[0] += 5.0
    # From the end of step 2 to step 10: 8 steps of 32 samples in 8 s once evaluation is out.
    assert clock.steady_samples_per_s == pytest.approx(32.0)
    assert clock.seconds == 5.0
    short = trainer.StepClock(samples_per_step=32)
    short.on_step_end(None, SimpleNamespace(global_step=1), None)  # type: ignore[arg-type]
    assert short.steady_samples_per_s is None  # too few steps to say
