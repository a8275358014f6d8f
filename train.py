"""Training entry point.

    python train.py codec --data DIR [--preset encodec-32khz] [--out runs/codec] ...   train EnCodec
    python train.py codec --resume --out runs/codec                                     continue a run
    python train.py lm ...                                                               (issue 8)

The code lives in the `training` package; `python train.py codec --help` lists every setting.
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the EnCodec codec or the MusicGen language model.")
    commands = parser.add_subparsers(dest="command", required=True)
    from training.settings import add_codec_arguments

    codec = commands.add_parser("codec", help="train EnCodec on a folder of audio (GAN, balanced losses)",
                                description="Train EnCodec on a folder of audio files with Lightning.")
    add_codec_arguments(codec)
    commands.add_parser("lm", help="train the MusicGen language model (not implemented yet)")
    args = parser.parse_args(argv)
    if args.command == "lm":
        print("train.py lm: not implemented yet; see issue 8", file=sys.stderr)
        return 2
    from training.train_codec import main as train_codec_main

    given = {k: v for k, v in vars(args).items() if k != "command"}
    train_codec_main(given)
    return 0


if __name__ == "__main__":
    sys.exit(main())
