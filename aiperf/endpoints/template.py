"""The template endpoint: any JSON API, without writing a plugin.

The request body is the user's Jinja template (``payload_template``: inline, or the path
of a file holding it) rendered for each dataset entry; it must render JSON. Its variables
(AIPerf's names): ``text`` (the prompt; also ``texts``, ``query`` and ``queries``),
``passages`` / ``passage`` (a rankings entry's), ``model``, ``max_tokens`` (the output
length, or None), ``stream`` and ``extra`` (the entry's extra fields). Write strings with
``|tojson``: ``{"prompt": {{ text|tojson }}, "max_new_tokens": {{ max_tokens|tojson }}}``.

The answer text is found by ``response_field`` in a whole body, or in each streamed event;
the usage, if any, by ``usage_field`` (an object of ``prompt_tokens``/``completion_tokens``
or ``input_tokens``/``output_tokens``). A field is a JMESPath expression, or a dotted path
whose numbers index lists (``choices.0.text``). Without ``response_field`` the endpoint
reads ``text``, ``generated_text``, ``output_text`` or ``content`` at the top level.

As in AIPerf, ``payload_template``, ``response_field`` and ``usage_field`` may also come in
``extra_inputs``; they are taken out of the body. A stream ends with ``[DONE]`` (the
common SSE convention), or, for an API that sends none, with the event whose
``stream_end_field`` is true (llama.cpp's ``/completion``: ``stop``). jinja2 and
jmespath are imported only when this endpoint is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.dataset.rankings import PASSAGES_KEY
from aiperf.endpoints.base import (
    NOT_CONTENT,
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    decode_json,
    error_of,
    token_count,
)
from aiperf.errors import ConfigError
from aiperf.plugin.metadata import EndpointMetadata

TEMPLATE_KEYS = ("payload_template", "response_field", "usage_field", "stream_end_field")
_decode = msgspec.json.decode
DEFAULT_TEXT_KEYS = ("text", "generated_text", "output_text", "content")
# A dotted path: names and list indexes (``choices.0.message.content``); anything else is
# read as JMESPath.
_DOTTED = re.compile(r"[A-Za-z_][\w-]*(\.(\d+|[A-Za-z_][\w-]*))*")
# A template is read from a file when the value names one; a value with braces or line
# breaks is a template itself, never a path.
_MAX_PATH = 4096


def template_setting(config: UserConfig, key: str) -> Any:
    """A template setting from its own key, else from extra_inputs (AIPerf's way)."""
    value = getattr(config, key)
    return value if value is not None else config.extra_inputs.get(key)


def check_settings(config: UserConfig) -> None:
    """Every template setting compiles (a ``ConfigError`` naming the key if not). A
    template file named in ``extra_inputs`` is read into it here, once, as the
    ``payload_template`` key's is: a remote worker never needs the file."""
    source = template_source(template_setting(config, "payload_template"))
    compile_template(source)
    if config.payload_template is None:
        config.extra_inputs["payload_template"] = source
    for key in TEMPLATE_KEYS[1:]:
        value = template_setting(config, key)
        if value is not None:
            compile_path(value, key)


def template_source(value: Any, key: str = "payload_template") -> str:
    """The template text: the file ``value`` names, or ``value`` itself (a JSON object
    given already decoded, as ``--extra-inputs payload_template:{...}`` may, is a fixed
    body)."""
    if isinstance(value, dict):
        return json.dumps(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: a Jinja template of the request body (or the path of a "
                          "file holding one) is required by the template endpoint")
    if "{" in value or "\n" in value or len(value) > _MAX_PATH:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: {value!r} is neither a template (no '{{') nor a file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read the template file {path}: {exc}") from None


def compile_template(source: str, key: str = "payload_template") -> Any:
    import jinja2  # only a template endpoint needs it

    # Undefined variables are errors, not empty strings that break the JSON silently.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{key}: Jinja syntax error at line {exc.lineno}: "
                          f"{exc.message}") from None


def compile_path(expression: str, key: str) -> Callable[[Any], Any]:
    """A function reading ``expression`` (dotted path or JMESPath) from a decoded body."""
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError(f"{key}: an empty path")
    if _DOTTED.fullmatch(expression):
        steps = [int(s) if s.isdigit() else s for s in expression.split(".")]
        return lambda obj: _walk(obj, steps)
    import jmespath  # only a template endpoint with a JMESPath expression needs it
    from jmespath.exceptions import JMESPathError

    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as exc:
        raise ConfigError(f"{key}: {expression!r} is neither a dotted path nor valid "
                          f"JMESPath ({exc})") from None
    return compiled.search


def _walk(obj: Any, steps: list[int | str]) -> Any:
    for step in steps:
        if isinstance(step, int) and isinstance(obj, list):
            obj = obj[step] if -len(obj) <= step < len(obj) else None
        elif isinstance(obj, dict):
            obj = obj.get(str(step))
        else:
            return None
        if obj is None:
            return None
    return obj


def _default_text(obj: Any) -> Any:
    if isinstance(obj, dict):
        for key in DEFAULT_TEXT_KEYS:
            if key in obj:
                return obj[key]
    return None


def _usage(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return token_count(prompt), token_count(completion)


class TemplateEndpoint(BaseEndpoint):
    def __init__(self, config: UserConfig, metadata: EndpointMetadata) -> None:
        super().__init__(config, metadata)
        self._template = compile_template(
            template_source(template_setting(config, "payload_template")))
        text_field = template_setting(config, "response_field")
        self._text = (compile_path(text_field, "response_field") if text_field is not None
                      else _default_text)
        usage_field = template_setting(config, "usage_field")
        self._usage = (compile_path(usage_field, "usage_field") if usage_field is not None
                       else None)
        end_field = template_setting(config, "stream_end_field")
        self._end = (compile_path(end_field, "stream_end_field") if end_field is not None
                     else None)
        self._extra = {k: v for k, v in config.extra_inputs.items() if k not in TEMPLATE_KEYS}

    @property
    def url(self) -> str:
        # The URL as given is the request's: a JSON API has no path this plugin could know
        # (custom_endpoint, if set, is appended to the base URL by the worker instead).
        return self.config.url

    def payload(self, turn: Turn) -> dict[str, Any]:
        passages = turn.extra.get(PASSAGES_KEY)
        passages = passages if isinstance(passages, list) else []
        variables = {
            "text": turn.text, "texts": [turn.text], "query": turn.text,
            "queries": [turn.text], "passages": passages,
            "passage": passages[0] if passages else None, "model": self.config.model,
            "max_tokens": turn.output_length, "stream": self.streaming, "extra": turn.extra,
        }
        try:
            rendered = self._template.render(**variables)
        except Exception as exc:  # an undefined variable, a filter's error
            raise ValueError(f"payload_template: rendering failed: {type(exc).__name__}: "
                             f"{exc}") from None
        try:
            body = json.loads(rendered)
        except ValueError as exc:
            raise ValueError(f"payload_template did not render JSON ({exc}): "
                             f"{rendered[:120]!r}") from None
        if not isinstance(body, dict):
            raise ValueError(f"payload_template must render a JSON object, not "
                             f"{type(body).__name__}")
        return body

    def encode(self, turn: Turn) -> bytes:
        # As BaseEndpoint.encode, without the template's own settings in the body, nor a
        # rankings entry's passages (the template places them, as ``passages``).
        body = self.payload(turn)
        body.update(self._extra)
        body.update({k: v for k, v in turn.extra.items() if k != PASSAGES_KEY})
        return json.dumps(body, ensure_ascii=False).encode()

    def _read(self, obj: Any, what: str) -> ParsedResponse:
        error = error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        try:
            text = self._text(obj)
            usage = self._usage(obj) if self._usage is not None else None
        except (TypeError, ValueError) as exc:  # a JMESPath function given the wrong type
            raise InvalidResponse(f"template {what}: the path failed: {exc}") from None
        prompt, completion = _usage(usage)
        if text is not None and not isinstance(text, str):
            text = json.dumps(text) if isinstance(text, dict | list) else str(text)
        return ParsedResponse(text, prompt, completion)

    def parse_events(self, events: list[bytes]) -> list[ParsedResponse]:
        # One decoder call for the whole stream (the events are JSON values); a bad event
        # is then found and named one by one.
        try:
            decoded = _decode(b"[" + b",".join(events) + b"]")
        except msgspec.MsgspecError:
            decoded = None
        if not isinstance(decoded, list) or len(decoded) != len(events):
            return [self.parse_event(data) for data in events]
        return [self._event(obj) for obj in decoded]

    def parse_event(self, data: bytes) -> ParsedResponse:
        return self._event(decode_json(data, what="template stream event"))

    def _event(self, obj: Any) -> ParsedResponse:
        parsed = self._read(obj, "event")
        if parsed.error is not None:
            return parsed
        content = parsed.content or None  # an empty piece is not a token
        if parsed.prompt_tokens is None and parsed.completion_tokens is None:
            return NOT_CONTENT if content is None else ParsedResponse(content)
        return ParsedResponse(content, parsed.prompt_tokens, parsed.completion_tokens)

    def stream_ended(self, last_event: bytes) -> bool:
        """With ``stream_end_field``, a stream whose last event has a true value there ended
        as its API ends one (no ``[DONE]``)."""
        if self._end is None:
            return False
        try:
            return bool(self._end(_decode(last_event)))
        except (msgspec.MsgspecError, TypeError, ValueError):
            return False

    def parse_body(self, body: bytes) -> ParsedResponse:
        parsed = self._read(decode_json(body, what="template response"), "response")
        if parsed.error is not None:
            return parsed
        if parsed.content is None and self.metadata.produces_tokens \
                and parsed.completion_tokens is None:
            field = template_setting(self.config, "response_field") or \
                f"any of {', '.join(DEFAULT_TEXT_KEYS)}"
            raise InvalidResponse(f"template response: no text at {field}: "
                                  f"{body[:120].decode('utf-8', 'replace')!r}")
        return parsed if parsed.content is not None else ParsedResponse(
            "", parsed.prompt_tokens, parsed.completion_tokens)
