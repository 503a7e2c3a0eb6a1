"""The ``imgclf info`` and ``imgclf serve`` commands, added to the parser by
:func:`add_commands` (``imgclf.cli.build_parser``). Parsing imports nothing
heavy; each command imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
import os

#: What MODEL is, in every command's help.
MODEL_HELP = "a model saved by 'imgclf train' or clf.save"


def _load(args):
    import imgclf
    from imgclf.exceptions import PathNotFoundError

    if not os.path.exists(args.model):
        raise PathNotFoundError(
            f"No saved model at {args.model!r}; give the file 'imgclf train' wrote."
        )
    return imgclf.load(args.model, trusted=args.trusted)


def run_info(args) -> int:
    card = _load(args).card_
    if args.format == "json":
        print(json.dumps(card, indent=1))
    else:
        print(card.to_markdown() if args.format == "markdown" else card.to_text(), end="")
    return 0


def run_serve(args) -> int:
    from ._serving import serve

    mib = 2**20
    return serve(
        args.model,
        host=args.host,
        port=args.port,
        trusted=args.trusted,
        max_upload_bytes=int(args.max_upload_mb * mib),
        max_request_bytes=int(args.max_request_mb * mib),
        max_images=args.max_images,
    )


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0.")
        return value

    return parse


def _trusted(parser) -> None:
    parser.add_argument(
        "--trusted",
        action="store_true",
        help="also load pickles (they can run any code: only files from a source you trust)",
    )


def add_commands(sub, debug) -> None:
    """Add ``info`` and ``serve`` to the sub-command parsers ``sub``
    (``debug``: the parent parser of ``--debug``)."""
    info = sub.add_parser("info", parents=[debug], help="print a saved model's model card")
    info.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    info.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="default: text"
    )
    _trusted(info)
    info.set_defaults(func=run_info)

    serve = sub.add_parser(
        "serve",
        parents=[debug],
        help="a page and a JSON API to try a saved model (needs imgclf[serve])",
    )
    serve.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="default: %(default)s; 0 picks a free port"
    )
    limits = (
        ("--max-upload-mb", float, 20.0, "MB", "largest file, an image or a zip"),
        ("--max-request-mb", float, 100.0, "MB", "largest request, all its files"),
        ("--max-images", int, 500, "N", "most images in one request, each of a zip's counted"),
    )
    for flag, kind, default, metavar, text in limits:
        serve.add_argument(
            flag,
            type=_positive(kind),
            default=default,
            metavar=metavar,
            help=f"{text} (default: %(default)s)",
        )
    _trusted(serve)
    serve.set_defaults(func=run_serve)


__all__ = ["add_commands", "run_info", "run_serve"]
