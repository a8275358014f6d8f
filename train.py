"""Training entry point.

    python train.py codec --data DIR [--preset encodec-32khz] [--out runs/codec] ...   train EnCodec
    python train.py codec --resume --out runs/codec                                     continue a run
    python train.py lm --data DIR --codec CODEC [--out runs/lm] ...                     train the MusicGen LM
    python train.py lm --data DIR --init facebook/musicgen-small ...                    fine-tune a MusicGen
    python train.py lm --resume --out runs/lm                                           continue a run

The code lives in the `training` package; `python train.py codec --help` and `python train.py lm --help` list
every setting.
"""

import threads  # noqa: I001  (first: the CPU thread policy must be set before torch loads)

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the EnCodec codec or the MusicGen language model.")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads (default: the cores not busy with other work; see threads.py)")
    commands = parser.add_subparsers(dest="command", required=True)
    from training.codec_settings import add_codec_arguments
    from training.lm_settings import add_lm_arguments

    codec = commands.add_parser("codec", help="train EnCodec on a folder of audio (GAN, balanced losses)",
                                description="Train EnCodec on a folder of audio files with Lightning.")
    add_codec_arguments(codec)
    lm = commands.add_parser("lm", help="train or fine-tune the MusicGen language model on captioned audio",
                             description="Train the MusicGen language model on codec tokens of captioned audio "
                                         "(or fine-tune a published one) with Lightning.")
    add_lm_arguments(lm)
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    print(f"threads: {threads.apply_threads(args.threads)}")
    given = {k: v for k, v in vars(args).items() if k not in ("command", "threads")}
    if args.command == "lm":
        from training.lm_train import main as train_lm_main

        train_lm_main(given)
        return 0
    from training.codec_train import main as train_codec_main

    train_codec_main(given)
    return 0


if __name__ == "__main__":
    sys.exit(main())  # warnings show as one line each (training/run.py: one_line_warning)
