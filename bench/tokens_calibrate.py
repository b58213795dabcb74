"""How far the token estimator (cfai_cli.core.tokens) is from the Llama 3 tokenizer, per kind of text.

Run by hand in an environment with `llama-models` installed (it ships the Llama 3 tokenizer file; nothing is
downloaded):  python bench/tokens_calibrate.py [FILE ...]
With no files it measures the project's own README and docs, sources and a few built-in samples in other languages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfai_cli.core.tokens import estimate_tokens

ROOT = Path(__file__).resolve().parents[1]

SAMPLES = {
    "zh": "人工智能是计算机科学的一个分支，它企图了解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的"
          "智能机器。该领域的研究包括机器人、语言识别、图像识别、自然语言处理和专家系统等。",
    "ja": "人工知能とは、計算機による知的な情報処理システムの設計や実現に関する研究分野である。"
          "東京は日本の首都であり、多くの人々が暮らしています。",
    "ru": "Искусственный интеллект — это свойство интеллектуальных систем выполнять творческие функции, которые "
          "традиционно считаются прерогативой человека. Москва является столицей России.",
    "fr": "L'intelligence artificielle est un ensemble de théories et de techniques mises en œuvre en vue de réaliser "
          "des machines capables de simuler l'intelligence humaine. Les élèves étudient à l'école.",
    "de": "Künstliche Intelligenz ist ein Teilgebiet der Informatik, das sich mit der Automatisierung intelligenten "
          "Verhaltens und dem maschinellen Lernen befasst. Die Straßenbahnhaltestelle ist geschlossen.",
    "ar": "الذكاء الاصطناعي هو سلوك وخصائص معينة تتسم بها البرامج الحاسوبية تجعلها تحاكي القدرات الذهنية البشرية "
          "وأنماط عملها.",
    "numbers": " ".join(str(i * 7919 % 1000003) for i in range(400)) + "\n3.14159 2024-11-24 $1,234.56 100%",
}


def corpus(paths: list[str]) -> dict[str, str]:
    if paths:
        return {p: Path(p).read_text(encoding="utf-8") for p in paths}
    # The project's English prose: the README and docs/ (which took over the README's long references).
    markdown = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts = {"README and docs": "".join(p.read_text(encoding="utf-8") for p in markdown)}
    texts["python"] = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "cfai_cli/core").rglob("*.py")))
    texts["json"] = (ROOT / "tests/schemas/openai-subset.json").read_text(encoding="utf-8")[:50_000]
    texts.update(SAMPLES)
    return texts


def main() -> None:
    try:
        from llama_models.llama3.tokenizer import Tokenizer
    except ImportError:
        sys.exit("needs `pip install llama-models` (the Llama 3 tokenizer file ships in that package)")
    exact = Tokenizer.get_instance()
    print(f"{'text':<14}{'chars':>9}{'exact':>9}{'estimate':>10}{'ratio':>8}")
    for name, text in corpus(sys.argv[1:]).items():
        real = len(exact.encode(text, bos=False, eos=False))
        guess = estimate_tokens(text)
        print(f"{name[:13]:<14}{len(text):>9}{real:>9}{guess:>10}{guess / max(real, 1):>8.2f}")


if __name__ == "__main__":
    main()
