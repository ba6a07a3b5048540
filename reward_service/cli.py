"""`reward-service` command line: serve, train-rm, models build|list|prepare, human export|summary,
config show|check."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys

from reward_service import config as config_module
from reward_service import model_store
from reward_service.errors import RewardServiceError
from reward_service.human import export as human_export


def _load_settings(path: str | None):
    try:
        return config_module.load(path)
    except config_module.ConfigError as exc:
        print(f"reward-service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def build_missing_models(settings) -> None:
    """Build the builtin models the config names and the cache lacks (once; reused after)."""
    for name, backend in settings.backends.items():
        model = getattr(backend, "model", None)
        if model in model_store.BUILTINS and not model_store.is_built(model_store.builtin_path(model)):
            spec = model_store.BUILTINS[model]
            print(f"backend {name!r} needs builtin model {model!r}; building it once into {model_store.models_dir()}")
            try:
                path = model_store.build(spec.build_key)
            except ImportError as exc:  # e.g. the serving image, which carries no training packages
                print(f"reward-service: cannot build {model!r} here ({exc}; building needs the `train` extra): build "
                      f"it where that is installed (`reward-service models build {spec.build_key}`) into "
                      f"{model_store.models_dir()}, or mount it there", file=sys.stderr)
                raise SystemExit(2) from None
            card = model_store.read_card(path)
            print(f"built {model_store.version(path)}: {json.dumps(_card_summary(card))}")


def _card_summary(card: dict) -> dict:
    keys = ("held_out_accuracy", "held_out_pairwise_accuracy", "build_seconds", "training_seconds")
    return {k: card[k] for k in keys if k in card}


def cmd_serve(args) -> None:
    from reward_service.app import create_app
    from reward_service.http_server import serve

    settings = _load_settings(args.config)
    overrides = {"host": args.host or settings.server.host,
                 "port": settings.server.port if args.port is None else args.port}
    settings = settings.model_copy(update={"server": settings.server.model_copy(update=overrides)})
    auth = settings.auth
    if not auth.keys_configured and not _is_loopback(settings.server.host) and not auth.allow_unauthenticated_remote:
        print(f"reward-service: refusing to serve on {settings.server.host} without API keys: set auth.api_keys "
              "or auth.api_keys_file (and admin keys), or auth.allow_unauthenticated_remote: true", file=sys.stderr)
        raise SystemExit(2)
    if settings.auto_build_models and not args.no_build:
        build_missing_models(settings)
    try:
        app = create_app(settings, config_path=args.config)
    except ValueError as exc:
        print(f"reward-service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    _print_labeling_pages(settings)
    serve(app, settings.server, args.log_level)


def _print_labeling_pages(settings) -> None:
    """Each human backend's own page: `/label` opens the first one, `/label?backend=NAME` any."""
    from urllib.parse import quote

    from reward_service.config import HumanBackendSettings

    humans = {name: b for name, b in settings.backends.items() if isinstance(b, HumanBackendSettings)}
    host = "localhost" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    for name, backend in humans.items():
        page = "/label" if len(humans) == 1 else f"/label?backend={quote(name)}"
        print(f"human backend {name!r}: raters sign in at http://{host}:{settings.server.port}{page} "
              f"({len(backend.raters)} rater token(s) configured{'' if backend.raters else ': add raters'})",
              file=sys.stderr)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_models_build(args) -> None:
    try:
        spec = model_store.builtin_by_key(args.name)
    except KeyError as exc:
        print(f"reward-service: {exc.args[0]}", file=sys.stderr)
        raise SystemExit(2) from None
    options = {"limit": args.limit} if args.limit else {}
    path = model_store.build(spec.build_key, force=args.force, **options)
    card = model_store.read_card(path)
    print(f"{model_store.version(path)} at {path}")
    print(json.dumps(_card_summary(card), indent=2))


def cmd_train_rm(args) -> None:
    from pathlib import Path

    from reward_service.training.preferences import PreferenceFormatError, read_preferences
    from reward_service.training.reward_model import file_entry, train_reward_model

    paths = list(args.data)
    if args.from_human is not None:
        paths.append(_export_human_pairs(args, Path(args.output)))
    if not paths:
        print("reward-service: no training data: give JSONL files, or --from-human", file=sys.stderr)
        raise SystemExit(2)
    pairs, files = [], []
    for path in paths:
        try:
            found, skipped = read_preferences(path, args.format, args.skip_bad_lines)
        except FileNotFoundError:
            print(f"reward-service: no such file: {path}", file=sys.stderr)
            raise SystemExit(2) from None
        except PreferenceFormatError as exc:
            print(f"reward-service: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        for line, problem in skipped:
            print(f"skipped {path}:{line}: {problem}", file=sys.stderr)
        pairs.extend(found)
        files.append(file_entry(Path(path)) | {"pairs": len(found), "skipped_lines": len(skipped)})
    print(f"{len(pairs)} preference pairs from {len(files)} file(s)")
    output = Path(args.output)
    options = dict(
        name=args.name or output.name, base_model=args.base_model, data_files=files, held_out_fraction=args.held_out,
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_length=args.max_length, seed=args.seed, trainable_layers=args.trainable_layers,
    )
    cards = []
    try:
        model_store.write_atomically(output, lambda staging: cards.append(
            train_reward_model(pairs, staging, **options)))
    except ValueError as exc:  # data that cannot be split or trained on; nothing was written
        print(f"reward-service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    card = cards[0]
    print(f"wrote {model_store.version(output)} to {output}")
    print(f"held-out pairwise accuracy {card['held_out_pairwise_accuracy']} on {card['data']['held_out_pairs']} pairs; "
          f"curve: {output / 'training_curve.png'}")
    if card.get("held_out_warning"):
        print(f"warning: {card['held_out_warning']}", file=sys.stderr)


def _export_human_pairs(args, output) -> str:
    """The human queue's ratings as a pairs file kept beside the model folder (its card
    records the file's hash), so `train-rm --from-human` is one command."""
    async def read(queue):
        return list(await queue.export_lines("pairs")), (await queue.summary())["rated_tasks"]

    args.backend = args.from_human or None
    queue, (lines, rated) = _with_human_queue(args, read)
    if not lines:
        print(f"reward-service: the human queue of backend {queue.name!r} ({queue.location}) has no "
              f"preference pairs yet: {rated} rated task(s); a pair needs a ranked list, or two responses to one "
              "prompt rated differently", file=sys.stderr)
        raise SystemExit(2)
    target = output.parent / f"{output.name}.human-pairs.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(lines), encoding="utf-8")
    print(f"exported {len(lines)} preference pairs from human backend {queue.name!r} to {target}")
    return str(target)


def cmd_models_prepare(args) -> None:
    """Everything a start would do to the config's models before it can serve: build missing
    builtins, then load each model backend once, so its ONNX export and int8 check are cached
    in the model cache (an image that runs this at build time starts in seconds)."""
    import asyncio

    settings = _load_settings(args.config)
    if not args.no_build:
        build_missing_models(settings)
        print("all builtin models the config names are built")
    asyncio.run(_load_model_backends_once(settings))


async def _load_model_backends_once(settings) -> None:
    from reward_service.backends import create_backend
    from reward_service.config import ModelBackendSettings

    for name, spec in settings.backends.items():
        if isinstance(spec, ModelBackendSettings):
            if spec.model in model_store.BUILTINS and not model_store.is_built(model_store.builtin_path(spec.model)):
                print(f"skipped {name!r}: builtin model {spec.model!r} is not built")
                continue
            backend = create_backend(name, spec)
            try:
                await backend.load()
                served = backend.details()
                print(f"prepared {name!r}: {backend.model_version}, {served.get('runtime')} "
                      f"{served.get('precision')} (cached in {model_store.home()})")
            except Exception as exc:  # the same failure `serve` would show in /readyz
                print(f"reward-service: backend {name!r} does not load: {type(exc).__name__}: {exc}", file=sys.stderr)
                raise SystemExit(1) from None
            finally:
                await backend.close()


def cmd_models_list(args) -> None:
    print(f"{'name':24} {'build with':42} {'status':10} version / path")
    for spec in model_store.BUILTINS.values():
        path = model_store.builtin_path(spec.name)
        built = model_store.is_built(path)
        status = "built" if built else "missing"
        where = f"{model_store.version(path)}  {path}" if built else str(path)
        print(f"{spec.name:24} {'reward-service models build ' + spec.build_key:42} {status:10} {where}")


def cmd_config_show(args) -> None:
    path = args.file or args.config
    if path:
        settings = _load_settings(path)
        import yaml

        print(yaml.safe_dump(_without_secrets(settings.model_dump(mode="json")), sort_keys=False), end="")
    else:
        print(config_module.default_config_text(), end="")


def _without_secrets(data: dict) -> dict:
    """The config as shown: keys, rater tokens and database passwords masked."""
    from reward_service.human.store import redact_url

    auth = data.get("auth", {})
    for field in ("api_keys", "admin_keys"):
        auth[field] = ["***"] * len(auth.get(field, []))
    for backend in data.get("backends", {}).values():
        if "raters" in backend:
            backend["raters"] = {name: "***" for name in backend["raters"]}
        if "store" in backend:
            backend["store"] = redact_url(backend["store"])
    return data


def cmd_config_check(args) -> None:
    settings = _load_settings(args.config)
    print(f"ok: {len(settings.backends)} backends ({', '.join(settings.backends)}), default {settings.default_backend!r}")


def _with_human_queue(args, work):
    """Open the named (or first) human backend's queue, run `work(queue)` (a coroutine
    function) on it, close it; returns (queue, what work returned)."""
    import asyncio

    from reward_service.config import HumanBackendSettings
    from reward_service.human.queue import HumanQueue

    settings = _load_settings(args.config)
    queues = {n: b for n, b in settings.backends.items() if isinstance(b, HumanBackendSettings)}
    name = args.backend or next(iter(queues), None)
    if name not in queues:
        print(f"reward-service: no human backend {name!r} in the config (human backends: "
              f"{', '.join(queues) or 'none'})", file=sys.stderr)
        raise SystemExit(2)
    queue = HumanQueue(name, queues[name])

    async def run():
        try:
            await queue.open()
        except (RewardServiceError, ValueError) as exc:
            print(f"reward-service: cannot open the human queue of {name!r}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        try:
            return await work(queue)
        finally:
            await queue.close()

    return queue, asyncio.run(run())


def cmd_human_export(args) -> None:
    async def read(queue):
        return list(await queue.export_lines(args.format)), await queue.summary()

    queue, (lines, summary) = _with_human_queue(args, read)
    target = open(args.output, "w", encoding="utf-8") if args.output != "-" else contextlib.nullcontext(sys.stdout)
    with target as out:
        out.writelines(lines)
    print(f"wrote {len(lines)} {args.format} lines from {summary['rated_tasks']} rated tasks "
          f"({summary['ratings']} ratings) of backend {queue.name!r} to {args.output}", file=sys.stderr)
    print(json.dumps({"agreement": summary["agreement"], "ratings_per_rater": summary["ratings_per_rater"]}),
          file=sys.stderr)


def cmd_human_summary(args) -> None:
    async def read(queue):
        return await queue.summary()

    print(json.dumps(_with_human_queue(args, read)[1], indent=2))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="reward-service", description="Reward-model-as-a-service for RLHF.")
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the HTTP service")
    serve.add_argument("--config", help="YAML config file (default: $REWARD_SERVICE_CONFIG or the embedded defaults)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8000)")
    serve.add_argument("--no-build", action="store_true", help="do not build missing builtin models first")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    train = commands.add_parser("train-rm", help="train a reward model on preference pairs or rank lists (JSONL)")
    train.add_argument("data", nargs="*", help="JSONL files: pairs, HH-style chosen/rejected, or rank lists")
    train.add_argument("--from-human", nargs="?", const="", metavar="BACKEND",
                       help="also train on the human queue's ratings (of BACKEND; default: the first human backend "
                            "of --config), exported to OUTPUT.human-pairs.jsonl")
    train.add_argument("--config", help="config naming the human backend (for --from-human)")
    train.add_argument("--output", "-o", required=True, help="model folder to write (replaced atomically)")
    train.add_argument("--format", default="auto", choices=["auto", "pairs", "hh", "ranklist"])
    train.add_argument("--base-model", "--base", dest="base_model",
                       help="HF folder to start from: an encoder, or a causal LM (a chat-template reward model); "
                            "default: the packaged MiniLM encoder")
    train.add_argument("--trainable-layers", type=int, help="train only the top N layers (and the head)")
    train.add_argument("--name", help="model name in its version string (default: the output folder name)")
    train.add_argument("--epochs", type=float, default=1.0)
    train.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    train.add_argument("--batch-size", type=int, default=16, help="pairs per step")
    train.add_argument("--learning-rate", type=float, default=5e-5)
    train.add_argument("--max-length", type=int, default=128, help="tokens per (prompt, response), as served")
    train.add_argument("--held-out", type=float, default=0.1, help="fraction of prompts held out for accuracy")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--skip-bad-lines", action="store_true", help="train on the readable lines, report the rest")
    train.set_defaults(func=cmd_train_rm)

    models = commands.add_parser("models", help="builtin models").add_subparsers(dest="models_command", required=True)
    build = models.add_parser("build", help="build a builtin model into the cache")
    build.add_argument("name", help="sentiment, sentiment-smollm2, sentiment-zh, sentiment-m3e-zh, rm or rm-smollm2-rt "
                                    "(see `models list`)")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    build.add_argument("--limit", type=int, help="train on at most this many examples (quick check)")
    build.set_defaults(func=cmd_models_build)
    models.add_parser("list", help="builtin models and whether they are built").set_defaults(func=cmd_models_list)
    prepare = models.add_parser("prepare", help="build the builtin models the config names that are missing, and "
                                "cache every model backend's ONNX export and int8 check (fast starts)")
    prepare.add_argument("--config")
    prepare.add_argument("--no-build", action="store_true", help="build nothing; skip backends whose builtin model "
                         "is not built (an environment without the `train` extra cannot build one)")
    prepare.set_defaults(func=cmd_models_prepare)

    human = commands.add_parser("human", help="the human rating queue").add_subparsers(
        dest="human_command", required=True)
    export = human.add_parser("export", help="ratings as JSONL that train-rm reads (pairs or rank lists)")
    export.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    export.add_argument("--format", default="pairs", choices=human_export.FORMATS,
                        help="pairs/ranklist: train-rm input; ratings: every rating with its rater (audit)")
    export.add_argument("--config")
    export.add_argument("--backend", help="human backend name (default: the first in the config)")
    export.set_defaults(func=cmd_human_export)
    summary = human.add_parser("summary", help="queue length, ratings per rater, inter-rater agreement")
    summary.add_argument("--config")
    summary.add_argument("--backend")
    summary.set_defaults(func=cmd_human_summary)

    cfg = commands.add_parser("config", help="the config").add_subparsers(dest="config_command", required=True)
    show = cfg.add_parser("show", help="print the embedded default config (or a file, validated, secrets masked)")
    show.add_argument("file", nargs="?", help="config file (default: the embedded defaults)")
    show.add_argument("--config", help="the same as FILE")
    show.set_defaults(func=cmd_config_show)
    check = cfg.add_parser("check", help="validate a config file")
    check.add_argument("config")
    check.set_defaults(func=cmd_config_check)
    return root


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
