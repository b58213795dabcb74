"""`cfai image`: generate images (or edit one) and write them to files, stdout, or print the OpenAI JSON.

Imports typer and cli.common at the top; service, core and render inside the command (cheap start-up).
Files are never overwritten without --force: an explicit -o that exists is refused before any call is
made, and default names (from the prompt) get a number instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from cfai_cli.cli.common import (
    OfflineOption,
    TimeoutOption,
    UsageOption,
    complete_choices,
    complete_model,
    report_spend,
    start,
)
from cfai_cli.cli.outfile import check_output

# For completing --size: the OpenAI sizes (core.translate.images.OPENAI_SIZES); any WIDTHxHEIGHT is accepted.
SIZES = ("256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "1792x1024", "1024x1792")

HELP = """Generate images with a Workers AI model and write them to files.

`cfai image PROMPT` generates; `cfai image edit INPUT PROMPT [--mask MASK]` edits INPUT (img2img, or inpainting
with a mask). Without -o the file is named after the prompt; `-o -` writes the image bytes to stdout.
The written paths are printed on stdout.
"""

EPILOG = """Examples:

  cfai image "a red fox in snow" -o fox.png

  cfai image "a lighthouse at dusk" -n 3 --size 1024x768 -m @cf/stabilityai/stable-diffusion-xl-base-1.0

  cfai image "a watercolour cat" -o - > cat.png

  cfai image edit fox.png "make it night" -o fox-night.png
"""

_EXT = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


def slug(prompt: str) -> str:
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    name = "-".join(words)[:60].strip("-")
    return name or "image"


def numbered(path: Path, index: int, count: int) -> Path:
    return path if count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def free_path(directory: Path, stem: str, suffix: str) -> Path:
    """`stem.suffix`, or `stem-2.suffix`, `stem-3.suffix`… whichever does not exist yet."""
    candidate = directory / f"{stem}{suffix}"
    n = 2
    while candidate.exists():
        candidate = directory / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def parse_args(args: list[str]) -> tuple[str, Path | None]:
    """(prompt, image to edit or None) from `PROMPT` or `edit INPUT PROMPT`."""
    if args and args[0] == "edit":
        if len(args) != 3:
            raise typer.BadParameter("usage: cfai image edit INPUT PROMPT", param_hint="ARGS")
        return args[2], Path(args[1])
    if len(args) != 1:
        raise typer.BadParameter("give one PROMPT (quote it), or: edit INPUT PROMPT", param_hint="ARGS")
    return args[0], None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint=what) from None


def image(
    invocation: typer.Context,
    args: Annotated[list[str], typer.Argument(metavar="PROMPT | edit INPUT PROMPT", show_default=False,
                                              help="What to draw; or `edit`, the image to change, and how.")],
    output: Annotated[str | None, typer.Option("--output", "-o", show_default=False,
                                               help="File to write (with -n, numbered); - for stdout.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing -o file.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", autocompletion=complete_model, show_default=False,
                                              help="An alias (dall-e-3) or a Workers AI image model id.")] = None,
    size: Annotated[str | None, typer.Option("--size", help="WIDTHxHEIGHT, e.g. 1024x768.", show_default=False,
                                             autocompletion=complete_choices(*SIZES))] = None,
    n: Annotated[int, typer.Option("-n", min=1, max=10, help="How many images (each with its own seed).")] = 1,
    seed: Annotated[int | None, typer.Option("--seed", min=0, show_default=False,
                                             help="Seed of the first image (reproducible results).")] = None,
    mask: Annotated[Path | None, typer.Option("--mask", show_default=False,
                                              help="With edit: the area to repaint (white = change).")] = None,
    json_out: Annotated[bool, typer.Option("--json",
                                           help="Print the OpenAI images response (base64) instead.")] = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
    show_usage: UsageOption = False,
) -> None:
    import asyncio

    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.core.openai.images import ImageEditRequest, ImageGenerationRequest
    from cfai_cli.service.context import open_context
    from cfai_cli.service.images import GeneratedImage, create_images, images_response

    prompt, source = parse_args(args)
    if not prompt.strip():
        raise typer.BadParameter("nothing to draw: the prompt is empty.", param_hint="PROMPT")
    if mask is not None and source is None:
        raise typer.BadParameter("--mask goes with `cfai image edit`.", param_hint="--mask")
    if output == "-" and n > 1:
        raise typer.BadParameter("-o - writes one image; use -n 1.", param_hint="-o")
    targets = [] if output in (None, "-") else [numbered(Path(output), i, n) for i in range(n)]
    for target in targets:  # before anything is generated: a drawing must not end in "cannot write"
        check_output(target, param="-o", force=force)

    term, settings = start(invocation.obj, offline=offline, timeout=timeout)
    body: dict[str, Any] = {"prompt": prompt, "n": n, "model": model, "size": size, "seed": seed}
    image_bytes = _read(source, "INPUT") if source else None
    mask_bytes = _read(mask, "--mask") if mask else None
    req = validate_request(ImageEditRequest if source else ImageGenerationRequest,
                           {k: v for k, v in body.items() if v is not None})

    async def run() -> list[GeneratedImage]:
        async with open_context(settings) as ctx:
            with term.waiting(f"drawing {n} image{'s' if n > 1 else ''}…"):
                images = await create_images(ctx, req, image=image_bytes, mask=mask_bytes)
            if show_usage:
                report_spend(ctx, term)
            if json_out:
                term.json(await images_response(ctx, req, images, base_url=None))
            return images

    images = asyncio.run(run())
    if json_out:
        return
    if output == "-":
        term.write_bytes(images[0].data)
        return
    for i, picture in enumerate(images):
        path = targets[i] if targets else free_path(Path.cwd(), slug(prompt) + (f"-{i + 1}" if n > 1 else ""),
                                                     _EXT[picture.info.format])
        path.write_bytes(picture.data)
        term.line(str(path))
        size_note = f"{picture.info.width}x{picture.info.height} " if picture.info.width else ""
        term.note(f"{size_note}{picture.info.format}, {len(picture.data):,} bytes")


def register(app: typer.Typer) -> None:
    app.command("image", help=HELP, epilog=EPILOG)(image)
