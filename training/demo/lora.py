"""LoRA-adapt the bundled demo model to music it never learnt, on a CPU: real recordings of game music.

    mkdir -p data/debs && (cd data/debs && apt-get download colobot-common-sounds && dpkg -x colobot-*.deb x)
    python -m training.demo.lora --music data/debs/x/usr/share/games/colobot/music     # runs/lora-demo

The demo LM learnt synthetic General MIDI styles only (its codec also heard these recordings, its LM never did).
Stages, each printed and skipped when its output exists:
1. a manifest of the tracks, each captioned with one trigger phrase (CAPTION, dreambooth-style: the phrase is just
   a caption), the last HELD_OUT tracks (by name) held out for validation;
2. `python train.py lm --init checkpoints/demo --lora-rank 8 ...`: the adapter (training/lora.py);
3. `training/demo/lora_eval.py`: held-out loss before and after, the loss on the old styles (forgetting), features
   of clips generated for CAPTION before and after against the held-out tracks', a figure of spectrograms.
The bundled model is only read. WORK/train_time.json records the training's wall and CPU seconds (the token
encoding included) and the machine's load.

The run reported in the README (docs/lora_demo.json) was started with a 300-step schedule and stopped by SIGTERM
at step 139 (the shared 2-core machine ran at a load of 7 to 15, five times slower than idle), then exported with
`python train.py lm --resume --out runs/lora-demo/run --max-steps 139`; it used 856 CPU seconds, token encoding
of the 62 minutes of training and held-out recordings included. The default here is 140 steps.
"""

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from training.audio_files import scan_audio_files

ROOT = Path(__file__).resolve().parents[2]
CAPTION = "colobot game soundtrack"
HELD_OUT = 4
TRAIN_FLAGS = ("--lora-rank", "8", "--segment-seconds", "8", "--batch-size", "10", "--lr", "2e-3",
               "--warmup-steps", "20", "--max-steps", "140", "--valid-every", "100", "--save-every", "100",
               "--valid-examples", "20", "--sample-every", "100", "--num-samples", "2", "--num-workers", "1",
               "--log-every", "10", "--no-progress-bar")


def write_manifests(music: Path, work: Path) -> tuple[Path, Path]:
    """(train.jsonl, valid.jsonl): the tracks of `music`, sorted by name, the last HELD_OUT held out."""
    tracks = sorted((Path(f.path) for f in scan_audio_files(music).readable), key=lambda p: p.name)
    if len(tracks) <= HELD_OUT:
        raise SystemExit(f"error: {music} holds {len(tracks)} audio files; at least {HELD_OUT + 1} are needed")
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, split in (("train", tracks[:-HELD_OUT]), ("valid", tracks[-HELD_OUT:])):
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"path": str(t.resolve()), "caption": CAPTION}) + "\n" for t in split))
        paths.append(path)
    return paths[0], paths[1]


def run(command: list[str]) -> None:
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LoRA-adapt the demo model to real recordings, then measure it.")
    parser.add_argument("--music", type=Path, required=True, help="a folder of recordings the demo LM never heard")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "lora-demo")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "lora_demo.png")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    train, valid = write_manifests(args.music, args.work)
    out = args.work / "run"
    if not (out / "adapter" / "adapter_config.json").is_file():
        started = time.perf_counter()
        resume = ["--resume"] if (out / "checkpoints" / "last.ckpt").is_file() else []
        run([sys.executable, "train.py", "--threads", str(args.threads), "lm", "--init", "checkpoints/demo",
             "--manifest", str(train), "--valid-data", str(valid), "--out", str(out), *TRAIN_FLAGS, *resume])
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        (args.work / "train_time.json").write_text(json.dumps({
            "wall_seconds": time.perf_counter() - started, "cpu_seconds": cpu.ru_utime + cpu.ru_stime,
            "load_average": Path("/proc/loadavg").read_text().split()[:3]}))
    run([sys.executable, "-m", "training.demo.lora_eval", str(args.work), "--figure", str(args.figure),
         "--caption", CAPTION])
    return 0


if __name__ == "__main__":
    sys.exit(main())
