"""Generate music in a web page: the Gradio app, a second front end of the pipeline the command line uses.

    pip install -r requirements-app.txt
    python app.py                          # http://127.0.0.1:7860, facebook/musicgen-small (offline: the demo model)
    python app.py --model demo --port 7861
    python app.py --listen                 # reachable from other machines (0.0.0.0)

The page (frontend/app_page.py) plays the audio while it is generated and then offers the final clip, written as
`generate.py` writes it. Its API endpoint `/generate` scripts the same thing:

    from gradio_client import Client
    wav_path = Client("http://127.0.0.1:7860/").predict("lo-fi funk", 10, 42, api_name="/generate")[0]
"""

import threads  # noqa: I001  (first: the CPU thread policy must be set before torch loads)

import argparse
import signal
import socket
import sys

from frontend.cli_inputs import fail
from frontend.models import DEFAULT_MODEL
from frontend.cli_inputs import CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A web page that generates music with MusicGen.")
    parser.add_argument("--model", metavar="NAME|REPO|FOLDER",
                        help=f"as generate.py's --model (default: {DEFAULT_MODEL}; offline: the bundled demo model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine)")
    parser.add_argument("--listen", action="store_true", help="serve on every address (0.0.0.0): other machines "
                                                              "of the network can open the page")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public *.gradio.live link (off by default)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the cores not busy)")
    return parser


def port_problem(host: str, port: int) -> str | None:
    """Why the app could not serve on host:port (taken, no such address), or None."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server: a just-closed port is free
        try:
            probe.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt()  # Gradio closes the server as after Ctrl-C, and main() removes the clips' folder


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        return fail(f"--port must be in 1..65535, got {args.port}")
    host = "0.0.0.0" if args.listen else args.host
    if problem := port_problem(host, args.port):  # before the model loads: a busy port costs no wait
        return fail(f"cannot serve on {host}:{args.port}: {problem} (choose another --port or --host)")
    try:
        import gradio  # noqa: F401
    except ImportError:
        return fail("the web app needs Gradio, which requirements.txt leaves out: pip install -r requirements-app.txt")
    thread_policy = threads.apply_threads(args.threads)
    from frontend.app_page import build_page
    from frontend.app_session import ClipStore, GenerationSession
    from frontend.request_checks import MAX_UPLOAD_BYTES

    store = ClipStore()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        session = GenerationSession(args.model, store, thread_policy)
        print(f"model      {session.source} ({session.mg.device.type})\nthreads    {thread_policy}\nclips in   "
              f"{store.folder} (removed at exit)")
        page = build_page(session)
        page.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=args.port, share=args.share,
            max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[])
    except (CliError, ValueError, OSError) as err:
        return fail(str(err))
    except KeyboardInterrupt:
        return 0
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
