"""effnet_b0's fitted verification init with another recipe, or B1-B3's, for the comparisons of docs/models.md.

    python scripts/distill_b0.py OUT.pt [--model effnet_b1] [--steps 300] [--views 140] [--size 128] [--lr 1e-3]
        [--threads 1] [--data DIR]

Not part of the package: `edgekit.models.verification` builds the shipped recipe (`distill.RECIPE`); this builds
one with other steps, views, size or learning rate, or for B1-B3 (`--model`, taught by the Lite of the same
size: Lite1, Lite2, and Lite3's own verification init), and with `--data` prints top-1 on those photos for the
teacher, the symmetric-padded teacher and the result. Then `edgekit export MODEL --weights OUT.pt --target
onnx,onnx-int8,tflite-int8,executorch-int8` judges its int8 artifacts. The variants without int8
rounding while fitting (plain, SiLU cap penalty, per-unit rounding) were measured with this script at commit
4ba5fb8.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from edgekit.calibration import load_calibration
from edgekit.models import create_model, get_card
from edgekit.models.verification import KEYWORD, distill

TEACHERS = {"effnet_b0": "effnet_lite0", "effnet_b1": "effnet_lite1", "effnet_b2": "effnet_lite2",
            "effnet_b3": "effnet_lite3"}


def teacher_weights(name: str) -> str:
    return "imagenet" if get_card(name).offline_weights else KEYWORD


def top1(model: torch.nn.Module, name: str, data: str) -> float:
    from edgekit.images import find_images, load_batch

    images = find_images(data, get_card(name))
    logits = distill.run(model, torch.from_numpy(load_batch([i.path for i in images], get_card(name))))
    return (logits.argmax(1) == torch.tensor([i.label for i in images])).float().mean().item()


def main(argv: list[str]) -> int:
    recipe = dict(distill.RECIPE)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--model", choices=sorted(TEACHERS), default="effnet_b0")
    for key in ("steps", "views", "size", "batch", "lr"):
        parser.add_argument(f"--{key}", type=type(recipe[key]), default=recipe[key])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=None)
    args = parser.parse_args(argv)
    recipe.update({key: getattr(args, key) for key in ("steps", "views", "size", "batch", "lr")})
    torch.set_num_threads(args.threads)
    began = time.time()
    t_card, s_card = get_card(TEACHERS[args.model]), get_card(args.model)
    teacher = create_model(t_card.name, weights=teacher_weights(t_card.name)).eval()
    distill.symmetric_padding(teacher)
    student = create_model(s_card.name).eval()
    distill.start(teacher, student, t_card, s_card)
    views = [torch.from_numpy(load_calibration(card, size=args.views).data) for card in (t_card, s_card)]
    distill.fit(teacher, student, *views, recipe=recipe, say=print)
    torch.save(student.state_dict(), args.out)
    print(f"built in {time.time() - began:.0f} s")
    if args.data:
        lite = create_model(t_card.name, weights=teacher_weights(t_card.name)).eval()
        print(f"top-1 on {args.data}: {t_card.name} {top1(lite, t_card.name, args.data):.3f}, symmetric-padded "
              f"{top1(teacher, t_card.name, args.data):.3f}, {args.model} {top1(student, s_card.name, args.data):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
