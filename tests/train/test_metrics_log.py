"""TensorBoard event files carry exactly the numbers of metrics.jsonl, also across a resume."""

import json
import shutil
import struct

import numpy as np
import toy
from tensorboardX.proto import event_pb2

from genjax.data import Preprocess
from genjax.train import fit, write_figures

FLAT = Preprocess(flatten=True)


def _events(logdir):
    """Every Event of every file, in file order, read with the TFRecord framing (u64 length,
    u32 crc, payload, u32 crc) and the Event protocol buffer: no TensorBoard code involved."""
    out = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            payload = data[pos + 12 : pos + 12 + length]
            pos += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(payload)
            out.append(event)
    return out


def _scalars(events):
    """``{tag: {step: value}}`` as TensorBoard shows them: a session START at step s (written
    by a resumed writer) purges the earlier events at steps >= s."""
    seen: list[tuple[str, int, float]] = []
    for e in events:
        if e.HasField("session_log") and e.session_log.status == e.session_log.START:
            seen = [item for item in seen if item[1] < e.step]
        for v in e.summary.value:
            if v.HasField("simple_value"):
                seen.append((v.tag, e.step, v.simple_value))
    table: dict[str, dict[int, float]] = {}
    for tag, step, value in seen:
        assert step not in table.setdefault(tag, {}), (tag, step)  # each step once
        table[tag][step] = value
    return table


def _jsonl_table(path):
    table: dict[str, dict[int, float]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for k, v in rec.items():
            if k not in ("step", "split"):
                table.setdefault(f"{rec['split']}/{k}", {})[rec["step"]] = v
    return table


def _fit(workdir, steps):
    config = toy.train_config(
        steps, log_every=4, eval_every=8, checkpoint_every=8, async_checkpoints=False
    )
    return fit(
        toy.task(noise=0.1),
        toy.digits_dataset(256),
        config,
        workdir,
        preprocess_spec=FLAT,
        evaluate=lambda params, state: {
            "score": float(np.sum(params["model"]["params"]["Dense_0"]["bias"]))
        },
    )


def test_event_files_hold_the_jsonl_numbers_across_a_resume(tmp_path):
    _fit(tmp_path, 20)
    # As if the process died after logging step 20 but before its checkpoint was committed:
    # the resume starts at 16 and redoes 17..20, whose first lines and events must vanish.
    shutil.rmtree(tmp_path / "checkpoints" / "20")
    assert _fit(tmp_path, 24).start_step == 16
    jsonl = _jsonl_table(tmp_path / "metrics.jsonl")
    board = _scalars(_events(tmp_path / "tensorboard"))
    assert set(board) == set(jsonl) >= {"train/loss", "train/mse", "test/score"}
    for tag, by_step in jsonl.items():
        assert sorted(board[tag]) == sorted(by_step), tag
        for step, value in by_step.items():
            assert board[tag][step] == np.float32(value), (tag, step)
    assert sorted(board["test/score"]) == [8, 16, 24]


def test_figures_become_images(tmp_path):
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "samples.png")
    plt.close(fig)
    write_figures(tmp_path, 7, [tmp_path / "samples.png"])
    images = [
        (v.tag, e.step, v.image)
        for e in _events(tmp_path / "tensorboard")
        for v in e.summary.value
        if v.HasField("image")
    ]
    assert [(tag, step) for tag, step, _ in images] == [("figures/samples", 7)]
    image = images[0][2]
    assert (image.width, image.height, image.colorspace) == (100, 50, 3)


def test_writers_opened_within_one_second_keep_each_others_events(tmp_path):
    from genjax.train import MetricsLog

    for start, steps in ((0, (1, 2)), (2, (3, 4))):  # a resume from step 2, at once
        log = MetricsLog(tmp_path, resume_step=start)
        for step in steps:
            log.write({"step": step, "split": "train", "loss": float(step)})
        log.close()
    write_figures(tmp_path, 4, [])  # nothing to add: opens no writer
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert _scalars(_events(tmp_path / "tensorboard"))["train/loss"] == {
        1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0
    }  # fmt: skip
