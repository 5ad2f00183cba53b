"""The profile record: what one model family accepts, and the one check made before sending."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fmclient._media import canonical_mime, wav_seconds
from fmclient.errors import UnsupportedFeatureError
from fmclient.types import (
    AudioPart,
    DocumentPart,
    ImagePart,
    ImageRequest,
    Request,
    SpeechRequest,
    TranscriptionRequest,
    VideoPart,
)

__all__ = ["Profile", "StructuredOutputMode", "structured_output_mode"]

#: How a family produces schema-constrained JSON: a native ``json_schema`` response format, a
#: forced call of a tool whose input schema is the format, a JSON grammar the local runtime
#: enforces, or ``None`` when the host decides.
StructuredOutputMode = Literal["json_schema", "tool", "json_grammar"]

# Fields a host may lower (bools to False, limits down), never raise.
_LIMITS = (
    "max_stop_sequences",
    "context_window",
    "max_output_tokens",
    "max_images",
    "max_audio_bytes",
    "max_video_bytes",
    "max_document_bytes",
    "max_document_pages",
    "max_document_total_bytes",
    "max_audio_seconds",
    "max_media_bytes",
    "max_inline_media_bytes",
    "max_documents",
    "transcription_max_bytes",
    "speech_max_characters",
)
# Fields a host may narrow to a subset (formats).
_FORMATS = ("audio_formats", "video_formats", "document_formats")
#: The media switches a family of the table leaves off unless its entry turns them on.
MEDIA_SWITCHES = ("audio", "video", "documents")


@dataclass(frozen=True, slots=True)
class Profile:
    """What one model family accepts. Every host adapter starts from the family's profile (see
    :func:`fmclient.profiles.profile_for`); a host may only narrow it, with :meth:`restrict`.

    The default profile accepts everything: for a model nobody knows, the server decides.
    """

    chat: bool = True
    streaming: bool = True
    #: a system prompt is accepted (sent with the role :attr:`system_role`)
    system: bool = True
    tools: bool = True
    images: bool = True
    stop: bool = True
    max_stop_sequences: int | None = None
    temperature: bool = True
    top_p: bool = True
    structured_output: bool = True
    #: the host can make embeddings with this model
    embeddings: bool = False
    # -- beyond the basics --------------------------------------------------------------------
    #: the family's name in the table ("" for the permissive default)
    family: str = ""
    #: role that carries the system prompt: OpenAI's reasoning models take it as "developer"
    system_role: Literal["system", "developer"] = "system"
    #: ``tool_choice="required"`` (the model must call some tool)
    forced_tool_choice: bool = True
    #: ``tool_choice="<tool name>"`` (the model must call that tool)
    named_tool_choice: bool = True
    #: tools in a streamed call
    streaming_tools: bool = True
    #: temperature and top_p in the same request (newer Claude models take one or the other)
    temperature_with_top_p: bool = True
    #: a conversation that ends with an assistant turn for the model to continue (prefill)
    assistant_prefill: bool = True
    structured_output_mode: StructuredOutputMode | None = None
    #: the model reasons (thinks) before it answers
    reasoning: bool = False
    #: with reasoning on, the family still takes temperature / a forced or named tool choice
    #: (Claude's extended thinking takes neither: the API answers 400)
    reasoning_with_temperature: bool = True
    #: (where the family takes no forced tool under reasoning, structured output made by forcing
    #: a tool, ``structured_output_mode = "tool"``, is refused with it)
    reasoning_with_forced_tool: bool = True
    #: with reasoning on, the lowest ``top_p`` taken (Claude's thinking: 0.95 to 1); None: any
    reasoning_min_top_p: float | None = None
    #: with reasoning on, the ``top_k`` provider option is taken (Claude's thinking takes none)
    reasoning_with_top_k: bool = True
    #: Claude's thinking takes an effort, ``thinking: {"type": "adaptive"}`` with
    #: ``output_config.effort`` (Claude 4.6 and later), instead of a token budget
    adaptive_thinking: bool = False
    #: ``reasoning=`` as a token budget is accepted (Claude 4.7 and 5 answer a budget with 400)
    reasoning_budget: bool = True
    #: the efforts ``reasoning=`` takes ("none" ... "max"); None: not known here, the server decides
    reasoning_efforts: tuple[str, ...] | None = None
    #: the output-limit parameter the family requires on OpenAI's API (None: the host's default)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    #: the OpenAI API the family is best served by: its reasoning models keep their reasoning
    #: between turns only through the Responses API
    api: Literal["chat", "responses"] = "chat"
    #: embedding options (dimensions, normalisation) are accepted
    embedding_options: bool = True
    #: prompt-cache breakpoints (:class:`~fmclient.types.CachePoint`) are honoured or accepted as a hint
    prompt_caching: bool = True
    context_window: int | None = None
    max_output_tokens: int | None = None
    # -- image generation and image embeddings ----------------------------------------------------
    #: the model makes images (:meth:`~fmclient.Client.generate_image`)
    image_generation: bool = False
    #: the sizes it makes, "WxH" (and "auto" where the API takes it); None: any size the rules below allow
    image_sizes: tuple[str, ...] | None = None
    #: aspect ratios it takes instead of a size ("16:9"); a "WxH" size is reduced to one of them
    image_aspect_ratios: tuple[str, ...] | None = None
    #: for free sizes: each side a multiple of this, within (min, max), at most this many pixels
    image_size_step: int | None = None
    image_side_range: tuple[int, int] | None = None
    image_max_pixels: int | None = None
    #: for free sizes: at least this many pixels, the long side at most this many times the short
    image_min_pixels: int | None = None
    image_max_aspect_ratio: float | None = None
    #: for free sizes: ``size="auto"`` (the model picks) is taken too
    image_auto_size: bool = False
    #: images per request
    max_images: int | None = None
    image_negative_prompt: bool = True
    image_seed: bool = True
    #: quality levels it takes (None: it takes no quality setting)
    image_qualities: tuple[str, ...] | None = None
    #: the encodings it answers in, as the ``output_format`` provider option names them (OpenAI's
    #: Images API: "png", "jpeg", "webp"...); None: the option is not checked here
    image_output_formats: tuple[str, ...] | None = None
    #: :meth:`~fmclient.Client.embed` takes images as well as text
    image_embeddings: bool = False
    # -- audio, video and document input ----------------------------------------------------------
    # A family in the table takes a media kind only where its entry says so (the loader sets the
    # three switches False otherwise); the permissive default, for a model nobody knows, takes all.
    #: audio parts (:class:`~fmclient.AudioPart`) in a user message
    audio: bool = True
    #: video parts (:class:`~fmclient.VideoPart`)
    video: bool = True
    #: document parts (:class:`~fmclient.DocumentPart`)
    documents: bool = True
    #: the MIME types taken for each kind (canonical spellings: ``audio/wav``, ``audio/mpeg``...);
    #: None: any type of that kind, the server decides
    audio_formats: tuple[str, ...] | None = None
    video_formats: tuple[str, ...] | None = None
    document_formats: tuple[str, ...] | None = None
    #: the largest inline part of each kind, in bytes (a URL the provider fetches is not counted)
    max_audio_bytes: int | None = None
    max_video_bytes: int | None = None
    max_document_bytes: int | None = None
    #: the pages of every PDF of a request together
    max_document_pages: int | None = None
    #: the bytes of every inline document of a request together (OpenAI's file inputs: "32 MB of
    #: total content in a single request, across multiple file inputs")
    max_document_total_bytes: int | None = None
    #: the bytes of every inline image, audio, video and document of a request together
    max_media_bytes: int | None = None
    #: the bytes of inline media a request may carry; above it, a host with a files API (the
    #: Gemini API) uploads the largest parts and sends references, and a host without one
    #: narrows the per-kind limits to it (None: no such limit known)
    max_inline_media_bytes: int | None = None
    #: the documents of a request
    max_documents: int | None = None
    #: the seconds of every audio part of a request together (counted where the header tells: WAV)
    max_audio_seconds: int | None = None

    # -- transcription and speech -----------------------------------------------------------------
    #: the model transcribes audio (:meth:`~fmclient.Client.transcribe`)
    transcription: bool = False
    #: the largest audio file it takes, in bytes (the upload or inline-request limit)
    transcription_max_bytes: int | None = None
    #: the audio MIME types it takes; None: any audio
    transcription_formats: tuple[str, ...] | None = None
    #: it answers timed segments, the language and the duration (whisper-1's verbose_json)
    transcription_timestamps: bool = False
    #: the model answers with audio too (``complete(..., audio={...})``)
    audio_output: bool = False
    #: it answers in audio only: a chat call without ``audio=`` is refused (Gemini's TTS models)
    audio_output_only: bool = False
    #: it streams its audio answers (``stream(..., audio={...})``: audio pieces on the chunks)
    audio_output_streaming: bool = False
    #: the formats it streams audio answers in; None: any it answers in. ``wav`` is taken where
    #: ``pcm16`` is: the PCM pieces are wrapped as a WAV file (OpenAI streams pcm16 only)
    audio_output_stream_formats: tuple[str, ...] | None = None
    #: the model speaks text (:meth:`~fmclient.Client.speak`)
    speech: bool = False
    #: the output formats it makes (``format=``); the first is its default
    speech_formats: tuple[str, ...] | None = None
    #: the longest text it speaks in one request, in characters
    speech_max_characters: int | None = None
    #: it takes ``instructions=`` (a speaking style)
    speech_instructions: bool = True
    #: why a host narrowed a field: (field, reason) pairs, quoted in the refusal
    restrictions: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    # -- narrowing ------------------------------------------------------------------------------
    def restrict(self, *, reason: str, **fields: object) -> Profile:
        """This profile narrowed for a host reason, e.g. ``restrict(temperature=False, reason=...)``.

        Booleans may only go from True to False and limits only down; the mode fields
        (``structured_output_mode``, ``system_role``, ``max_tokens_param``, ``api``) may be replaced.
        The reason is quoted in every refusal the narrowing causes.
        """
        if not reason:
            raise ValueError("a restriction needs a reason")
        changes: dict[str, object] = {}
        reasons = list(self.restrictions)
        for name, value in fields.items():
            if name not in _FIELD_NAMES or name in ("family", "restrictions"):
                raise TypeError(f"Profile has no restrictable field {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool) or name == "embeddings":
                if value is not False:
                    raise ValueError(f"a host may only restrict {name} to False, not widen it")
                if current is False:
                    continue  # already refused by the family: its own reason stands
            elif name in _FORMATS:
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{name} must be a list of MIME types")
                value = tuple(value)
                if current is not None and not set(value) <= set(current):
                    raise ValueError(f"a host may only narrow {name} to a subset of the family's")
                if current is not None and set(value) == set(current):
                    continue
            elif name in _LIMITS:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name} must be a non-negative integer")
                if current is not None and value >= current:
                    continue
            changes[name] = value
            reasons.append((name, reason))
        if not changes:
            return self
        return dataclasses.replace(self, **changes, restrictions=tuple(reasons))  # type: ignore[arg-type]

    def with_host_embeddings(self) -> Profile:
        """The one widening a host may make: servers such as Ollama, llama.cpp or an
        OpenAI-compatible server make embeddings with any model they serve."""
        return self if self.embeddings else dataclasses.replace(self, embeddings=True)

    # -- the check before sending ---------------------------------------------------------------
    def check(self, request: Request, *, provider: str, streaming: bool = False) -> None:
        """Raise :class:`UnsupportedFeatureError` for anything in ``request`` this model cannot take."""
        model = request.model

        def refuse(what: str, *fields: str) -> UnsupportedFeatureError:
            why = next((reason for name, reason in self.restrictions if name in fields), None)
            message = f"model {model!r} does not support {what}"
            if why:
                message += f": {why}"
            return UnsupportedFeatureError(message, provider=provider, model=model)

        if not self.chat:
            kind = (
                "an image generation"
                if self.image_generation
                else "a transcription"
                if self.transcription
                else "a speech"
                if self.speech
                else "an embedding"
                if self.embeddings
                else None
            )
            raise refuse("chat completions" + (f" (it is {kind} model)" if kind else ""), "chat")
        if request.audio is None and self.audio_output_only:
            raise refuse(
                "answers in text: it answers in audio only (pass audio={'voice': ..., 'format': 'wav'})",
                "audio_output_only",
            )
        if request.audio is not None:
            if not self.audio_output:
                raise refuse("audio answers (audio=)", "audio_output")
            if streaming and not self.audio_output_streaming:
                raise refuse("streamed audio answers (audio= with stream; use complete)", "audio_output_streaming")
            formats, answer_format = self.audio_output_stream_formats, request.audio.get("format")
            wrapped = answer_format == "wav" and "pcm16" in (formats or ())
            if streaming and formats and answer_format not in formats and not wrapped:
                raise refuse(
                    f"streamed audio answers in format {answer_format!r}: it streams {', '.join(formats)} only "
                    "(or 'wav', the PCM wrapped as a WAV file); use complete() for other formats",
                    "audio_output_stream_formats",
                )
        if streaming and not self.streaming:
            raise refuse("streaming", "streaming")
        if request.system and not self.system:
            raise refuse("a system prompt", "system")
        if request.tools and not self.tools:
            raise refuse("tools", "tools")
        choice = request.tool_choice
        if choice == "required" and not self.forced_tool_choice:
            raise refuse("a forced tool choice (tool_choice='required')", "forced_tool_choice")
        if choice not in (None, "auto", "none", "required") and not self.named_tool_choice:
            raise refuse(f"forcing a named tool (tool_choice={choice!r})", "named_tool_choice")
        if streaming and request.tools and choice != "none" and not self.streaming_tools:
            raise refuse("tools in a streamed call", "streaming_tools")
        if request.stop and not self.stop:
            raise refuse("stop sequences", "stop")
        if request.stop and self.max_stop_sequences is not None and len(request.stop) > self.max_stop_sequences:
            raise refuse(f"more than {self.max_stop_sequences} stop sequences", "max_stop_sequences")
        if request.temperature is not None and not self.temperature:
            raise refuse("temperature", "temperature")
        if request.top_p is not None and not self.top_p:
            raise refuse("top_p", "top_p")
        if request.temperature is not None and request.top_p is not None and not self.temperature_with_top_p:
            raise refuse("temperature and top_p together (set one of them)", "temperature_with_top_p")
        if request.messages and request.messages[-1].role == "assistant" and not self.assistant_prefill:
            raise refuse(
                "a prefilled assistant turn (the conversation ends with an assistant message)", "assistant_prefill"
            )
        if request.response_format is not None and not self.structured_output:
            raise refuse("structured output", "structured_output")
        limit = self.max_output_tokens
        if request.max_tokens is not None and limit is not None and request.max_tokens > limit:
            raise refuse(f"max_tokens={request.max_tokens} (its maximum output is {limit} tokens)", "max_output_tokens")
        # An unknown model (the permissive default, no family) may reason: its server decides.
        if request.reasoning is not None and not self.reasoning and self.family:
            raise refuse(f"reasoning={request.reasoning!r} (it is not a reasoning model)", "reasoning")
        efforts = self.reasoning_efforts
        if isinstance(request.reasoning, int) and not self.reasoning_budget:
            takes = f"it takes an effort: {_one_of(efforts)}" if efforts else "it takes an effort"
            raise refuse(f"reasoning={request.reasoning!r} as a token budget ({takes})", "reasoning_budget")
        if isinstance(request.reasoning, str) and efforts is not None and request.reasoning not in efforts:
            raise refuse(
                f"reasoning={request.reasoning!r} (it takes an effort: {_one_of(efforts)})", "reasoning_efforts"
            )
        # The rules of thinking hold however it was switched on: reasoning=, or Claude's own
        # thinking object passed as a provider option.
        thinking = request.reasoning is not None or _thinking_option(request.provider_options)
        on = "reasoning=" if request.reasoning is not None else "thinking (the thinking provider option)"
        if thinking and request.temperature is not None and not self.reasoning_with_temperature:
            raise refuse(f"temperature together with {on}", "reasoning_with_temperature")
        if thinking:
            self._check_sampling_under_reasoning(request, refuse, on)
        if thinking and choice not in (None, "auto", "none") and not self.reasoning_with_forced_tool:
            raise refuse(f"a forced tool choice (tool_choice={choice!r}) with {on}", "reasoning_with_forced_tool")
        if (
            thinking
            and request.response_format is not None
            and structured_output_mode(self, request) == "tool"
            and not self.reasoning_with_forced_tool
        ):
            raise refuse(
                f"structured output together with {on}: here it is made by forcing a tool call, and a forced "
                "tool does not mix with thinking (drop the thinking, or use a model with native structured output)",
                "reasoning_with_forced_tool",
                "structured_output_mode",
            )
        if not self.prompt_caching and request.cache_points:
            raise refuse("prompt caching (a CachePoint in the prompt)", "prompt_caching")
        if not self.images:
            for message in request.messages:
                if not isinstance(message.content, str) and any(isinstance(p, ImagePart) for p in message.content):
                    raise refuse("image input", "images")
        self._check_media(request, refuse)

    def _check_media(self, request: Request, refuse: Callable[..., UnsupportedFeatureError]) -> None:
        """Audio, video and documents: the kind, its formats and its limits, before sending."""
        pages = 0
        seconds = 0.0
        inline = 0
        documents = 0
        document_bytes = 0
        for message in request.messages:
            if isinstance(message.content, str):
                continue
            for part in message.content:
                if isinstance(part, (ImagePart, AudioPart, VideoPart, DocumentPart)) and part.data is not None:
                    inline += len(part.data)
                    if isinstance(part, DocumentPart):
                        document_bytes += len(part.data)
                documents += isinstance(part, DocumentPart)
                if isinstance(part, (AudioPart, VideoPart, DocumentPart)):
                    self._check_media_part(part, refuse)
                if isinstance(part, DocumentPart) and self.max_document_pages is not None:
                    pages += part.page_count() or 0
                if isinstance(part, AudioPart) and part.data is not None:
                    seconds += wav_seconds(part.data) or 0.0
        if self.max_document_pages is not None and pages > self.max_document_pages:
            raise refuse(
                f"{pages} document pages in one request (at most {self.max_document_pages})", "max_document_pages"
            )
        if self.max_documents is not None and documents > self.max_documents:
            raise refuse(f"{documents} documents in one request (at most {self.max_documents})", "max_documents")
        total = self.max_document_total_bytes
        if total is not None and document_bytes > total:
            raise refuse(
                f"{document_bytes:,} bytes of inline documents in one request (at most {total:,} together)",
                "max_document_total_bytes",
            )
        if self.max_media_bytes is not None and inline > self.max_media_bytes:
            raise refuse(
                f"{inline:,} bytes of inline media in one request (at most {self.max_media_bytes:,})",
                "max_media_bytes",
            )
        if self.max_audio_seconds is not None and seconds > self.max_audio_seconds:
            raise refuse(
                f"{seconds:.0f} seconds of audio in one request (at most {self.max_audio_seconds})", "max_audio_seconds"
            )

    def _check_media_part(
        self, part: AudioPart | VideoPart | DocumentPart, refuse: Callable[..., UnsupportedFeatureError]
    ) -> None:
        kind, switch = {
            "audio": ("audio", "audio"),
            "video": ("video", "video"),
            "document": ("document", "documents"),
        }[part.type]
        if not getattr(self, switch):
            raise refuse(f"{kind} input", switch)
        formats: tuple[str, ...] | None = getattr(self, f"{kind}_formats")
        media_type = canonical_mime(part.media_type) if part.media_type else None
        if formats is not None:
            if media_type is None:
                raise refuse(
                    f"a {kind} of unknown type (it takes {', '.join(formats)}): pass mime_type=", f"{kind}_formats"
                )
            if media_type not in formats:
                raise refuse(f"{kind} of type {media_type} (it takes {', '.join(formats)})", f"{kind}_formats")
        limit: int | None = getattr(self, f"max_{kind}_bytes")
        if limit is not None and part.data is not None and len(part.data) > limit:
            raise refuse(f"a {kind} of {len(part.data):,} bytes inline (at most {limit:,})", f"max_{kind}_bytes")

    def _check_sampling_under_reasoning(
        self, request: Request, refuse: Callable[..., UnsupportedFeatureError], on: str
    ) -> None:
        low = self.reasoning_min_top_p
        if request.top_p is not None and low is not None and request.top_p < low:
            raise refuse(
                f"top_p={request.top_p:g} together with {on} (with thinking on, top_p is {low:g} to 1)",
                "reasoning_min_top_p",
            )
        if not self.reasoning_with_top_k and _top_k_option(request.provider_options) is not None:
            raise refuse(f"top_k together with {on}", "reasoning_with_top_k")

    def check_image(self, request: ImageRequest, *, provider: str) -> None:
        """Raise :class:`UnsupportedFeatureError` for an image request this model cannot produce."""
        model = request.model

        def refuse(what: str) -> UnsupportedFeatureError:
            return UnsupportedFeatureError(f"model {model!r} {what}", provider=provider, model=model)

        if not self.image_generation:
            why = next((reason for name, reason in self.restrictions if name == "image_generation"), None)
            raise refuse("does not generate images" + (f": {why}" if why else ""))
        if self.max_images is not None and request.n > self.max_images:
            raise refuse(f"makes at most {self.max_images} images per request (n={request.n})")
        if request.negative_prompt is not None and not self.image_negative_prompt:
            raise refuse("does not take a negative prompt")
        if request.seed is not None and not self.image_seed:
            raise refuse("does not take a seed")
        if request.quality is not None:
            if self.image_qualities is None:
                raise refuse("does not take a quality setting")
            if request.quality not in self.image_qualities:
                raise refuse(f"does not take quality={request.quality!r} (it takes {', '.join(self.image_qualities)})")
        if request.size is not None:
            self._check_image_size(request.size, refuse)
        wanted = request.provider_options.get("output_format")
        formats = self.image_output_formats
        if formats is not None and wanted is not None and wanted not in formats:
            raise refuse(f"does not make output_format={wanted!r} (it makes {', '.join(formats)})")

    def check_transcription(self, request: TranscriptionRequest, *, provider: str) -> None:
        """Raise :class:`UnsupportedFeatureError` for audio this model cannot transcribe."""
        model = request.model

        def refuse(what: str) -> UnsupportedFeatureError:
            return UnsupportedFeatureError(f"model {model!r} {what}", provider=provider, model=model)

        if not self.transcription:
            why = next((reason for name, reason in self.restrictions if name == "transcription"), None)
            raise refuse("does not transcribe audio" + (f": {why}" if why else ""))
        formats = self.transcription_formats
        if formats is not None and request.mime_type not in formats:
            raise refuse(f"does not take {request.mime_type} audio (it takes {', '.join(formats)})")
        limit = self.transcription_max_bytes
        if limit is not None and len(request.audio) > limit:
            why = next((reason for name, reason in self.restrictions if name == "transcription_max_bytes"), None)
            raise refuse(
                f"takes audio files of at most {limit} bytes ({limit / 1_000_000:g} MB); this one has "
                f"{len(request.audio)}: " + (why if why else "split it, or compress it (a lower bitrate MP3, say)")
            )

    def check_speech(self, request: SpeechRequest, *, provider: str) -> None:
        """Raise :class:`UnsupportedFeatureError` for a speech request this model cannot make."""
        model = request.model

        def refuse(what: str) -> UnsupportedFeatureError:
            return UnsupportedFeatureError(f"model {model!r} {what}", provider=provider, model=model)

        if not self.speech:
            why = next((reason for name, reason in self.restrictions if name == "speech"), None)
            raise refuse("does not make speech" + (f": {why}" if why else ""))
        formats = self.speech_formats
        if request.format is not None and formats is not None and request.format not in formats:
            raise refuse(f"does not make format={request.format!r} (it makes {', '.join(formats)})")
        if request.instructions is not None and not self.speech_instructions:
            raise refuse("does not take instructions (a speaking style)")
        limit = self.speech_max_characters
        if limit is not None and len(request.text) > limit:
            raise refuse(f"speaks at most {limit} characters per request; this text has {len(request.text)}")

    def _check_image_size(self, size: str, refuse: Callable[[str], UnsupportedFeatureError]) -> None:
        ratios = self.image_aspect_ratios
        if ratios is not None:
            if image_aspect_ratio(size) not in ratios:
                raise refuse(f"cannot make size {size!r} (it takes the aspect ratios {', '.join(ratios)})")
            # A "WxH" size on a ratio model (Gemini's image models) also names a resolution.
            most = self.image_max_pixels
            if most is not None and ":" not in size and math.prod(int(side) for side in size.split("x")) > most:
                raise refuse(f"cannot make size {size!r} (at most {most} pixels)")
            return
        if self.image_sizes is not None:
            if size not in self.image_sizes:
                raise refuse(f"cannot make size {size!r} (it makes {', '.join(self.image_sizes)})")
            return
        if size == "auto" and self.image_auto_size:
            return
        if ":" in size or size == "auto":
            raise refuse(f"cannot make size {size!r} (give a size as WIDTHxHEIGHT)")
        width, height = (int(side) for side in size.split("x"))
        step, sides, pixels = self.image_size_step, self.image_side_range, self.image_max_pixels
        if step is not None and (width % step or height % step):
            raise refuse(f"cannot make size {size!r} (each side must be a multiple of {step})")
        if sides is not None and not all(sides[0] <= side <= sides[1] for side in (width, height)):
            raise refuse(f"cannot make size {size!r} (each side must be {sides[0]} to {sides[1]} pixels)")
        if pixels is not None and width * height > pixels:
            raise refuse(f"cannot make size {size!r} (at most {pixels} pixels)")
        least = self.image_min_pixels
        if least is not None and width * height < least:
            raise refuse(f"cannot make size {size!r} (at least {least} pixels)")
        ratio = self.image_max_aspect_ratio
        if ratio is not None and max(width, height) > ratio * min(width, height):
            raise refuse(f"cannot make size {size!r} (the long side may be at most {ratio:g} times the short one)")


def structured_output_mode(profile: Profile, request: Request) -> StructuredOutputMode | None:
    """How ``request``'s structured output is made: the profile's mode, unless the request picks
    one with the ``structured_output`` provider option (``"native"`` or ``"tool"``, as Bedrock
    takes it)."""
    override = request.provider_options.get("structured_output")
    if override == "native":
        return "json_schema"
    if override == "tool":
        return "tool"
    return profile.structured_output_mode


def _thinking_option(options: Mapping[str, Any]) -> bool:
    """Whether a provider option turns Claude's thinking on: ``thinking`` at the top level
    (Anthropic) or in Bedrock's ``additionalModelRequestFields``, of type enabled or adaptive."""
    if not options:  # most calls pass none: asked on every call
        return False
    for holder in (options, options.get("additionalModelRequestFields")):
        thinking = holder.get("thinking") if isinstance(holder, Mapping) else None
        if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
            return True
    return False


def _top_k_option(options: Mapping[str, Any]) -> object:
    """``top_k`` where a provider option sets it: top level (Anthropic) or inside Bedrock's
    ``additionalModelRequestFields``."""
    if not options:
        return None
    for holder in (options, options.get("additionalModelRequestFields")):
        if isinstance(holder, Mapping) and holder.get("top_k") is not None:
            return holder["top_k"]
    return None


def _one_of(choices: tuple[str, ...]) -> str:
    """``'low', 'medium' or 'high'``."""
    quoted = [repr(choice) for choice in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def image_aspect_ratio(size: str) -> str:
    """``"16:9"`` for ``"1792x1008"`` (reduced) or ``"16:9"`` itself."""
    if ":" in size:
        return size
    width, height = (int(side) for side in size.split("x"))
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Profile))
