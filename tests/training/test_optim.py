"""Schedules against their closed forms, warm-up, and exact resumption of the step count."""

import math

import pytest
import torch

from hfseg.training.config import OptimSection, SchedulerSection
from hfseg.training.optim import build_optimizer, build_scheduler, lr_multiplier


def test_exponential_per_epoch_like_the_liver_study():
    f = lr_multiplier(SchedulerSection(name="exponential", gamma=0.92), steps_per_epoch=10, total_steps=100)
    assert f(0) == 1 and f(10) == pytest.approx(0.92) and f(30) == pytest.approx(0.92 ** 3)


def test_step_and_multistep():
    step = lr_multiplier(SchedulerSection(name="step", gamma=0.5, step_size=2), 4, 40)
    assert [step(s) for s in (0, 7, 8, 16)] == [1, 1, 0.5, 0.25]
    multi = lr_multiplier(SchedulerSection(name="multistep", gamma=0.1, milestones=[3, 5]), 2, 40)
    assert [multi(s) for s in (5, 6, 9, 10)] == pytest.approx([1, 0.1, 0.1, 0.01])


def test_cosine_polynomial_and_warmup():
    cos = lr_multiplier(SchedulerSection(name="cosine", min_lr_ratio=0.1), 10, 100)
    assert cos(0) == 1 and cos(50) == pytest.approx(0.1 + 0.9 * 0.5) and cos(100) == pytest.approx(0.1)
    poly = lr_multiplier(SchedulerSection(name="polynomial", power=2.0), 10, 100)
    assert poly(50) == pytest.approx(0.25)
    warm = lr_multiplier(SchedulerSection(name="cosine", warmup_steps=9), 10, 109)
    assert warm(0) == pytest.approx(0.1) and warm(4) == pytest.approx(0.5) and warm(9) == 1
    t = (60 - 9) / 100
    assert warm(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * t)))


def test_optimizers_and_scheduler_state_resumes():
    model = torch.nn.Linear(2, 2)
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        assert isinstance(build_optimizer(model.parameters(), OptimSection(name=name, lr=0.1)), cls)
    cfg = SchedulerSection(name="exponential", gamma=0.5)
    opt = build_optimizer(model.parameters(), OptimSection(lr=1.0))
    sched = build_scheduler(opt, cfg, steps_per_epoch=2, total_steps=10)
    for _ in range(3):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = build_optimizer(model.parameters(), OptimSection(lr=1.0))
    sched2 = build_scheduler(opt2, cfg, steps_per_epoch=2, total_steps=10)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == pytest.approx([0.5 ** 1.5])
    assert sched.get_last_lr() == pytest.approx([0.5 ** 1.5])
