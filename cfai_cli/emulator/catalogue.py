"""The emulator's model catalogue as data: `/ai/models/search` items (reference §9.1) and how each text model behaves.

Imports only the standard library. Properties copy the real catalogue's loose typing on purpose (strings
such as "true"/"128000", arrays for `price`, objects for `reasoning_effort`), so clients meet the same shapes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

TASKS: dict[str, tuple[str, str]] = {
    "Text Generation": ("c329a1f9-323d-4e91-b2aa-582dd4188d34",
                        "Family of generative text models, such as large language models (LLM), that can be "
                        "adapted for a variety of natural language tasks."),
    "Text Embeddings": ("0137cdcf-162a-4108-94f2-1ca59e8c65ee",
                        "Feature extraction models transform raw data into numerical features that can be "
                        "processed while preserving the information in the original dataset."),
    "Text-to-Image": ("3d6e1f35-341b-4915-a6c8-9a7142a9033a",
                      "Generates images from input text. These models can be used to generate and modify images "
                      "based on text prompts."),
    "Automatic Speech Recognition": ("dfce1c48-2a81-462e-a7fd-de97ce985207",
                                     "Automatic speech recognition (ASR) models convert a speech signal, typically "
                                     "an audio input, to text."),
    "Translation": ("f57d07cb-9087-487a-bbbf-bc3e17fecc4b",
                    "Translation models convert a sequence of text from one language to another."),
    "Text-to-Speech": ("b52660a1-9a95-4ab2-8b1d-f232be34604a",
                       "Text-to-Speech (TTS) is the task of generating natural sounding speech given text input."),
    "Text Classification": ("19606750-23ed-4371-aab2-c20349b53a60",
                            "Sentiment analysis or text classification is a common NLP task that classifies a text "
                            "input into labels or classes."),
    "Object Detection": ("9c178979-90d9-49d8-9e2c-0f1cf01815d4",
                         "Object detection models can detect instances of objects like persons, faces, license "
                         "plates, or others in an image."),
}

Reasoning = Literal["none", "think_tags", "default_on", "opt_in", "always"]
ToolShape = Literal["flat", "scout"]


@dataclass(frozen=True, slots=True)
class TextSpec:
    """How the emulator answers one text model on /ai/run.

    reasoning: "think_tags" = native model that inlines `<think>…</think>` in `response`;
    "default_on" = reasoning_content unless disabled; "opt_in" = only when asked; "always" = cannot be disabled.
    """

    dialect: Literal["native", "chat"]
    reasoning: Reasoning = "none"
    tool_shape: ToolShape = "flat"
    vision: bool = False
    default_max_tokens: int | None = 256
    guided_json: bool = False
    streams: bool = True  # gpt-oss answers JSON `{"result":{}}` to stream requests (reference §2.6)
    responses_api: bool = False


def _usd(*prices: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"unit": unit, "price": price, "currency": "USD"} for unit, price in prices]


def _tokens(per_m_in: float, per_m_out: float) -> list[dict[str, Any]]:
    return _usd(("per M input tokens", per_m_in), ("per M output tokens", per_m_out))


_NATIVE = TextSpec("native")
_CHAT = TextSpec("chat", reasoning="default_on", default_max_tokens=None)

# (name, task, created_at, description, properties, text behaviour or None)
_MODELS: list[tuple[str, str, str, str, dict[str, Any], TextSpec | None]] = [
    ("@cf/meta/llama-3.3-70b-instruct-fp8-fast", "Text Generation", "2024-12-06 17:09:18.338",
     "Llama 3.3 70B quantized to fp8 precision, optimized to be faster.",
     {"context_window": "24000", "price": _tokens(0.29, 2.25), "function_calling": "true", "async_queue": "true",
      "terms": "https://github.com/meta-llama/llama-models/blob/main/models/llama3_3/LICENSE"}, _NATIVE),
    ("@cf/meta/llama-3.1-8b-instruct-fast", "Text Generation", "2024-09-25 05:36:04.547",
     "[Fast version] The Meta Llama 3.1 collection of multilingual large language models (LLMs) is a collection of "
     "pretrained and instruction tuned generative models.",
     {"context_window": "128000", "price": _tokens(0.045, 0.384)}, _NATIVE),
    ("@cf/meta/llama-3.1-8b-instruct-fp8", "Text Generation", "2024-07-25 17:28:43.328",
     "Llama 3.1 8B quantized to FP8 precision.",
     {"context_window": "32000", "price": _tokens(0.152, 0.287)}, _NATIVE),
    ("@cf/meta/llama-3.1-8b-instruct", "Text Generation", "2024-07-18 22:53:33.746",
     "The Meta Llama 3.1 collection of multilingual large language models (LLMs) is a collection of pretrained "
     "and instruction tuned generative models.",
     {"context_window": "7968", "price": _tokens(0.282, 0.827), "planned_deprecation_date": "2026-05-30"},
     _NATIVE),
    ("@cf/meta/llama-3.2-1b-instruct", "Text Generation", "2024-09-25 21:36:32.050",
     "The Llama 3.2 instruction-tuned text only models are optimized for multilingual dialogue use cases.",
     {"context_window": "60000", "price": _tokens(0.027, 0.201)}, _NATIVE),
    ("@cf/meta/llama-3.2-3b-instruct", "Text Generation", "2024-09-25 20:05:43.986",
     "The Llama 3.2 instruction-tuned text only models are optimized for multilingual dialogue use cases.",
     {"context_window": "128000", "price": _tokens(0.051, 0.335)}, _NATIVE),
    ("@cf/meta/llama-3.2-11b-vision-instruct", "Text Generation", "2024-09-25 05:36:04.547",
     "The Llama 3.2-Vision instruction-tuned models are optimized for visual recognition, image reasoning, "
     "captioning, and answering general questions about an image.",
     {"context_window": "128000", "price": _tokens(0.049, 0.68),
      "terms": "https://github.com/meta-llama/llama-models/blob/main/models/llama3_2/LICENSE"},
     TextSpec("native", vision=True)),
    ("@cf/meta/llama-4-scout-17b-16e-instruct", "Text Generation", "2025-04-05 20:25:56.137",
     "Meta's Llama 4 Scout is a 17 billion parameter model with 16 experts that is natively multimodal.",
     {"context_window": "131000", "price": _tokens(0.27, 0.85), "function_calling": "true", "async_queue": "true"},
     TextSpec("native", tool_shape="scout", vision=True, guided_json=True)),
    ("@cf/mistralai/mistral-small-3.1-24b-instruct", "Text Generation", "2025-03-18 03:28:37.890",
     "Building upon Mistral Small 3, Mistral Small 3.1 adds state-of-the-art vision understanding and enhances "
     "long context capabilities up to 128k tokens.",
     {"context_window": "128000", "price": _tokens(0.35, 0.56), "function_calling": "true"},
     TextSpec("native", vision=True, guided_json=True)),
    ("@hf/nousresearch/hermes-2-pro-mistral-7b", "Text Generation", "2024-04-01 23:45:53.800",
     "Hermes 2 Pro on Mistral 7B is the new flagship 7B Hermes! Function calling and JSON mode.",
     {"context_window": "24000", "function_calling": "true", "beta": "true",
      "planned_deprecation_date": "2026-05-30"}, _NATIVE),
    ("@cf/google/gemma-3-12b-it", "Text Generation", "2025-03-18 03:58:02.423",
     "Gemma 3 models are well-suited for a variety of text generation and image understanding tasks.",
     {"context_window": "80000", "price": _tokens(0.345, 0.556),
      "planned_deprecation_date": "2026-05-30"}, TextSpec("native", vision=True, guided_json=True)),
    ("@cf/deepseek-ai/deepseek-r1-distill-qwen-32b", "Text Generation", "2025-01-22 19:48:55.776",
     "DeepSeek-R1-Distill-Qwen-32B is a model distilled from DeepSeek-R1 based on Qwen2.5.",
     {"context_window": "80000", "price": _tokens(0.497, 4.881), "reasoning": "true"},
     TextSpec("native", reasoning="think_tags")),
    ("@cf/qwen/qwq-32b", "Text Generation", "2025-03-05 21:52:40.974",
     "QwQ is the reasoning model of the Qwen series, capable of thinking and reasoning.",
     {"context_window": "24000", "price": _tokens(0.66, 1.0), "reasoning": "true"},
     TextSpec("native", reasoning="think_tags", guided_json=True)),
    ("@cf/qwen/qwen3-30b-a3b-fp8", "Text Generation", "2025-04-30 22:24:35.385",
     "Qwen3 is the latest generation of large language models in Qwen series, with dense and mixture-of-experts "
     "(MoE) models.",
     {"context_window": "32768", "price": _tokens(0.051, 0.34), "function_calling": "true", "reasoning": "true",
      "async_queue": "true"}, TextSpec("chat", reasoning="default_on", default_max_tokens=2000)),
    ("@cf/zai-org/glm-4.7-flash", "Text Generation", "2026-01-20 16:02:11.472",
     "GLM-4.7-Flash is a fast, efficient multilingual model with a 131K context window, strong at tool use "
     "and reasoning.",
     {"context_window": "131072", "price": _tokens(0.0605, 0.40), "function_calling": "true", "reasoning": "true"},
     _CHAT),
    ("@cf/moonshotai/kimi-k2.6", "Text Generation", "2026-04-21 18:40:09.221",
     "Kimi K2.6 is a mixture-of-experts model from Moonshot AI for agentic coding, tool use and vision.",
     {"context_window": "262144",
      "price": _usd(("per M input tokens", 0.95), ("per M cached input tokens", 0.16),
                    ("per M output tokens", 4.0)),
      "function_calling": "true", "reasoning": "true", "require_workers_paid": "true"},
     TextSpec("chat", reasoning="default_on", vision=True, default_max_tokens=None)),
    ("@cf/moonshotai/kimi-k2.5", "Text Generation", "2026-01-27 17:12:45.018",
     "Kimi K2.5 (now served by Kimi K2.6).",
     {"context_window": "262144", "function_calling": "true", "reasoning": "true",
      "planned_deprecation_date": "2026-05-30"}, _CHAT),
    ("@cf/google/gemma-4-26b-a4b-it", "Text Generation", "2026-04-02 15:31:27.604",
     "Gemma 4 26B A4B is a mixture-of-experts multimodal model from Google with optional thinking.",
     {"context_window": "256000", "price": _tokens(0.10, 0.30), "function_calling": "true", "reasoning": "true"},
     TextSpec("chat", reasoning="opt_in", vision=True, default_max_tokens=None)),
    ("@cf/nvidia/nemotron-3-120b-a12b", "Text Generation", "2026-03-11 19:20:51.733",
     "NVIDIA Nemotron 3 Super is a hybrid mixture-of-experts model for agentic reasoning.",
     {"function_calling": "true", "beta": "true"}, TextSpec("chat", default_max_tokens=None)),
    ("@cf/openai/gpt-oss-120b", "Text Generation", "2025-08-05 10:27:29.131",
     "OpenAI's open-weight models designed for powerful reasoning, agentic tasks, and versatile developer use "
     "cases - gpt-oss-120b is for production, general purpose, high reasoning use-cases.",
     {"context_window": "128000", "price": _tokens(0.35, 0.75), "function_calling": "true", "reasoning": "true",
      "reasoning_effort": {"supported_efforts": ["low", "medium", "high"], "default_effort": "medium",
                           "mandatory": True, "default_enabled": True},
      "async_queue": "true"},
     TextSpec("chat", reasoning="always", default_max_tokens=None, streams=False, responses_api=True)),
    ("@cf/openai/gpt-oss-20b", "Text Generation", "2025-08-05 10:49:53.265",
     "OpenAI's open-weight models designed for powerful reasoning, agentic tasks, and versatile developer use "
     "cases - gpt-oss-20b is for lower latency, and local or specialized use-cases.",
     {"context_window": "128000", "price": _tokens(0.20, 0.30), "function_calling": "true", "reasoning": "true",
      "reasoning_effort": {"supported_efforts": ["low", "medium", "high"], "default_effort": "medium",
                           "mandatory": True, "default_enabled": True},
      "async_queue": "true"},
     TextSpec("chat", reasoning="always", default_max_tokens=None, streams=False, responses_api=True)),
    ("@cf/meta/llama-guard-3-8b", "Text Generation", "2025-01-01 00:00:00.000",
     "Llama Guard 3 is a Llama-3.1-8B pretrained model, fine-tuned for content safety classification.",
     {"context_window": "131072", "price": _tokens(0.48, 0.03), "lora": "true"}, None),
    ("@cf/baai/bge-base-en-v1.5", "Text Embeddings", "2023-09-25 19:21:11.898",
     "BAAI general embedding (Base) model that transforms any given text into a 768-dimensional vector.",
     {"max_input_tokens": "512", "output_dimensions": "768", "price": _usd(("per M input tokens", 0.067)),
      "async_queue": "true"}, None),
    ("@cf/baai/bge-small-en-v1.5", "Text Embeddings", "2023-11-07 15:43:58.042",
     "BAAI general embedding (Small) model that transforms any given text into a 384-dimensional vector.",
     {"max_input_tokens": "512", "output_dimensions": "384", "price": _usd(("per M input tokens", 0.020)),
      "async_queue": "true"}, None),
    ("@cf/baai/bge-large-en-v1.5", "Text Embeddings", "2023-11-07 15:43:58.042",
     "BAAI general embedding (Large) model that transforms any given text into a 1024-dimensional vector.",
     {"max_input_tokens": "512", "output_dimensions": "1024", "price": _usd(("per M input tokens", 0.20)),
      "async_queue": "true"}, None),
    ("@cf/baai/bge-m3", "Text Embeddings", "2024-05-22 19:27:09.781",
     "Multi-Functionality, Multi-Linguality, and Multi-Granularity embeddings model.",
     {"context_window": "60000", "price": _usd(("per M input tokens", 0.0118)), "async_queue": "true"}, None),
    ("@cf/google/embeddinggemma-300m", "Text Embeddings", "2025-09-04 16:02:39.417",
     "EmbeddingGemma is a 300M parameter embedding model from Google, trained with Matryoshka learning.",
     {"price": _usd(("per M input tokens", 0.012))}, None),
    ("@cf/qwen/qwen3-embedding-0.6b", "Text Embeddings", "2025-10-01 12:00:00.000",
     "Qwen3 Embedding 0.6B: multilingual text embeddings with instruction support.",
     {"context_window": "8192", "price": _usd(("per M input tokens", 0.012))}, None),
    ("@cf/baai/bge-reranker-base", "Text Classification", "2025-02-14 12:28:19.009",
     "Different from embedding model, reranker uses question and document as input and directly output similarity "
     "instead of embedding.",
     {"price": _usd(("per M input tokens", 0.0031))}, None),
    ("@cf/black-forest-labs/flux-1-schnell", "Text-to-Image", "2024-08-29 16:37:39.541",
     "FLUX.1 [schnell] is a 12 billion parameter rectified flow transformer capable of generating images from "
     "text descriptions.",
     {"price": _usd(("per 512 by 512 tile", 0.0000528), ("per step", 0.0001056)),
      "terms": "https://bfl.ai/legal/terms-of-service"}, None),
    ("@cf/stabilityai/stable-diffusion-xl-base-1.0", "Text-to-Image", "2023-11-10 10:54:43.694",
     "Diffusion-based text-to-image generative model by Stability AI. Generates and modify images based on "
     "text prompts.",
     {"beta": "true", "price": _usd(("per step", 0.0))}, None),
    ("@cf/bytedance/stable-diffusion-xl-lightning", "Text-to-Image", "2024-02-27 17:41:29.578",
     "SDXL-Lightning is a lightning-fast text-to-image generation model.", {"beta": "true"}, None),
    ("@cf/lykon/dreamshaper-8-lcm", "Text-to-Image", "2024-02-27 17:40:38.881",
     "Stable Diffusion model fine-tuned for photorealism.", {}, None),
    ("@cf/runwayml/stable-diffusion-v1-5-img2img", "Text-to-Image", "2024-02-27 17:32:28.581",
     "Stable Diffusion model that transforms input images with a prompt.", {"beta": "true"}, None),
    ("@cf/runwayml/stable-diffusion-v1-5-inpainting", "Text-to-Image", "2024-02-27 17:23:57.528",
     "Stable Diffusion model that fills the masked parts of an image.", {"beta": "true"}, None),
    ("@cf/leonardo/phoenix-1.0", "Text-to-Image", "2025-08-27 01:18:18.880",
     "Phoenix 1.0 is a model by Leonardo.Ai that generates images with exceptional prompt adherence.",
     {"partner": "true", "price": _usd(("per 512 by 512 tile", 0.0058), ("per step", 0.00011))}, None),
    ("@cf/black-forest-labs/flux-2-dev", "Text-to-Image", "2025-11-25 00:00:00.000",
     "FLUX.2 [dev]: image generation and editing with up to four reference images.",
     {"price": _usd(("per output 512x512 tile, per step", 0.000825))}, None),
    ("@cf/black-forest-labs/flux-2-klein-4b", "Text-to-Image", "2026-01-15 00:00:00.000",
     "FLUX.2 [klein] 4B: fast image generation and editing, any size from 256 to 1920 pixels a side.", {}, None),
    ("@cf/black-forest-labs/flux-2-klein-9b", "Text-to-Image", "2026-01-15 00:00:00.000",
     "FLUX.2 [klein] 9B: higher-quality image generation and editing, any size from 256 to 1920 pixels a side.",
     {}, None),
    ("@cf/facebook/detr-resnet-50", "Object Detection", "2024-02-27 17:43:51.922",
     "DEtection TRansformer (DETR) model trained end-to-end on COCO 2017 object detection.", {"beta": "true"}, None),
    ("@cf/openai/whisper", "Automatic Speech Recognition", "2023-09-25 19:21:11.898",
     "Whisper is a general-purpose speech recognition model.",
     {"price": _usd(("per audio minute", 0.0005))}, None),
    ("@cf/openai/whisper-large-v3-turbo", "Automatic Speech Recognition", "2024-05-22 00:02:18.656",
     "Whisper is a pre-trained model for automatic speech recognition (ASR) and speech translation.",
     {"price": _usd(("per audio minute", 0.00051)), "async_queue": "true"}, None),
    ("@cf/myshell-ai/melotts", "Text-to-Speech", "2024-07-19 15:51:04.819",
     "MeloTTS is a high-quality multi-lingual text-to-speech library by MyShell.ai.",
     {"price": _usd(("per audio minute", 0.0002))}, None),
    ("@cf/deepgram/aura-1", "Text-to-Speech", "2025-08-27 01:18:18.880",
     "Aura is a context-aware text-to-speech (TTS) model that applies natural pacing, expressiveness, and "
     "fillers based on the context of the provided text.",
     {"partner": "true", "realtime": "true", "async_queue": "true",
      "price": _usd(("per 1k characters", 0.015))},  # the model page's unit price (the reference saw $0/minute)
     None),
    ("@cf/meta/m2m100-1.2b", "Translation", "2023-09-25 19:21:11.898",
     "Multilingual encoder-decoder (seq-to-seq) model trained for Many-to-Many multilingual translation.",
     {"languages": "english, chinese, french, spanish, arabic, russian, german, japanese, portuguese, hindi",
      "price": _tokens(0.342, 0.342), "async_queue": "true"}, None),
]

# Real ids where the reference quotes them; stable uuid5s for the rest.
_KNOWN_IDS = {"@cf/openai/gpt-oss-120b": "f9f2250b-1048-4a52-9910-d0bf976616a1",
              "@cf/baai/bge-reranker-base": "145337e7-cec3-4ebb-8e78-16ddfc75e580"}


def _item(name: str, task: str, created_at: str, description: str, props: Mapping[str, Any]) -> dict[str, Any]:
    task_id, task_description = TASKS[task]
    return {
        "id": _KNOWN_IDS.get(name) or str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://cfai.invalid/models/{name}")),
        "source": 1,
        "name": name,
        "description": description,
        "task": {"id": task_id, "name": task, "description": task_description},
        "created_at": created_at,
        "tags": [],
        "properties": [{"property_id": key, "value": value} for key, value in props.items()],
    }


CATALOGUE: list[dict[str, Any]] = [_item(n, t, c, d, p) for n, t, c, d, p, _ in _MODELS]
TEXT_MODELS: dict[str, TextSpec] = {n: spec for n, _, _, _, _, spec in _MODELS if spec is not None}
TASK_OF: dict[str, str] = {n: t for n, t, _, _, _, _ in _MODELS}


def _int_param(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))


def search(params: Mapping[str, str]) -> dict[str, Any]:
    """The body of GET /ai/models/search: filtered, paginated, enveloped (reference §9.1)."""
    items = CATALOGUE
    text = (params.get("search") or "").strip().lower()
    if text:
        items = [m for m in items if text in m["name"].lower() or text in m["description"].lower()]
    task = (params.get("task") or "").strip().lower()
    if task:
        items = [m for m in items if m["task"]["name"].lower() == task]
    author = (params.get("author") or "").strip().lower()
    if author:
        items = [m for m in items if m["name"].split("/")[1].lower() == author]
    if (params.get("hide_experimental") or "").lower() == "true":
        items = [m for m in items if not any(p["property_id"] == "beta" for p in m["properties"])]
    page = _int_param(params.get("page"), 1, 1, 1_000_000)
    per_page = _int_param(params.get("per_page"), 20, 1, 1000)
    chunk = items[(page - 1) * per_page : page * per_page]
    return {
        "result": chunk,
        "result_info": {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items)},
        "success": True,
        "errors": [],
        "messages": [],
    }
