"""On a CUDA host (skipped elsewhere): a student trains in bf16 on the GPU, full and LoRA, and answers from it."""
import pytest
import torch

from agorabench.setting import Setting

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8, "dropout": 0.0}])
def test_a_student_trains_in_bf16_on_cuda_and_answers_there(tmp_path, tiny_student, lora):
    from agorabench.models.answering import Decoding
    from agorabench.models.in_process import TransformersAnswerer
    from agorabench.models.store import RequestStore
    from agorabench.training.sft import sft_config, train_student
    from tests.test_training import make_params

    params = make_params(tmp_path, tiny_student, lora=lora)
    cfg = sft_config(params, str(tmp_path / "cfg"), 8)
    assert cfg.bf16 and not cfg.use_cpu  # bf16: auto takes bf16 on a GPU that has it
    metrics = train_student(params, "fake", "math", "response_generation")
    assert metrics["final_loss"] < metrics["first_loss"], metrics
    out = Setting("fake", "response_generation", "math").checkpoint(params)
    answerer = TransformersAnswerer(str(out), RequestStore(tmp_path / "store.sqlite"), batch_size=4)
    model, _ = answerer._load()
    assert next(model.parameters()).device.type == "cuda"
    answers = answerer.answer_many([[{"role": "user", "content": f"What is {i} plus 2?"}] for i in range(6)],
                                   Decoding(max_new_tokens=8, top_logprobs=5))
    assert all(a is not None and a.output_tokens for a in answers), answers
    assert answers[0].logprobs  # judges read these: they come back from a CUDA model too
    print("device", torch.cuda.get_device_name(), "loss", metrics["first_loss"], "->", metrics["final_loss"])
