"""The template endpoint: bodies from a user's Jinja template, text and usage found by a
JMESPath or dotted path, and a clear error naming the key for every bad setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.endpoints.base import InvalidResponse, ParsedResponse
from aiperf.plugin import PluginType, plugins

TEMPLATE = ('{"model": {{ model|tojson }}, "prompt": {{ text|tojson }}, '
            '"max_tokens": {{ max_tokens|tojson }}, "stream": {{ stream|tojson }}}')


def endpoint(**config: object):  # type: ignore[no-untyped-def]
    values = {"endpoint_type": "template", "payload_template": TEMPLATE, **config}
    return plugins.get_class(PluginType.ENDPOINT, "template")(
        UserConfig(**values), plugins.get_metadata(PluginType.ENDPOINT, "template"))


def test_the_body_is_the_rendered_template_with_extras_and_the_url_is_as_given() -> None:
    ep = endpoint(model="m", streaming=True, url="http://127.0.0.1:9/api/gen",
                  extra_inputs={"temperature": 0})
    body = json.loads(ep.encode(Turn("héllo \"x\"", 2, 7, extra={"top_k": 1})))
    assert body == {"model": "m", "prompt": "héllo \"x\"", "max_tokens": 7, "stream": True,
                    "temperature": 0, "top_k": 1}
    assert ep.url == "http://127.0.0.1:9/api/gen"


def test_aiperf_style_settings_in_extra_inputs_stay_out_of_the_body() -> None:
    ep = endpoint(payload_template=None, extra_inputs={
        "payload_template": TEMPLATE, "response_field": "out", "n": 2})
    body = json.loads(ep.encode(Turn("q", 1)))
    assert body["n"] == 2 and "payload_template" not in body and "response_field" not in body
    assert ep.parse_body(b'{"out": "yes"}').content == "yes"


def test_a_template_from_a_file_and_the_rankings_variables(tmp_path: Path) -> None:
    file = tmp_path / "rerank.j2"
    file.write_text('{"q": {{ query|tojson }}, "docs": {{ passages|tojson }},\n'
                    ' "first": {{ passage|tojson }}}')
    body = json.loads(endpoint(payload_template=str(file)).encode(
        Turn("q?", 3, extra={"passages": ["a", "b"]})))
    assert body == {"q": "q?", "docs": ["a", "b"], "first": "a"}
    # Read once, into the config: a remote worker renders the same text without the file.
    assert UserConfig(payload_template=str(file)).payload_template == file.read_text()


@pytest.mark.parametrize(("values", "message"), [
    ({"payload_template": None}, "needs payload_template"),
    ({"payload_template": "/no/such/template.j2"}, "neither a template"),
    ({"payload_template": '{"a": {{ text }'}, "payload_template: Jinja syntax error"),
    ({"response_field": "choices[0"}, "response_field: 'choices.0' is neither"),
    ({"usage_field": "  "}, "usage_field: an empty path"),
])  # fmt: skip
def test_bad_settings_are_refused_naming_the_key(values: dict[str, object],
                                                 message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        UserConfig(**{"endpoint_type": "template", "payload_template": TEMPLATE, **values})


@pytest.mark.parametrize(("template", "message"), [
    ('{"p": {{ text }}}', "did not render JSON"),
    ('{"p": {{ nothing|tojson }}}', "rendering failed"),
    ("[{{ text|tojson }}]", "must render a JSON object"),
])  # fmt: skip
def test_a_template_that_renders_no_json_object_says_so(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        endpoint(payload_template=template).encode(Turn("two words", 2))


@settings(max_examples=50, deadline=None)
@given(text=st.text(), tokens=st.none() | st.integers(1, 10_000))
def test_any_prompt_survives_the_template_through_tojson(text: str,
                                                         tokens: int | None) -> None:
    body = json.loads(endpoint().encode(Turn(text, 1, tokens)))
    assert body["prompt"] == text and body["max_tokens"] == tokens


@pytest.mark.parametrize(("field", "body", "text"), [
    ("choices.0.message.content", {"choices": [{"message": {"content": "hi"}}]}, "hi"),
    ("choices[0].message.content", {"choices": [{"message": {"content": "hi"}}]}, "hi"),
    ("join('', outputs[].text)", {"outputs": [{"text": "a"}, {"text": "b"}]}, "ab"),
    ("data.1", {"data": ["x", "y"]}, "y"),
    ("result", {"result": {"k": 1}}, '{"k": 1}'),
    ("n", {"n": 5}, "5"),
])  # fmt: skip
def test_the_answer_is_found_by_dotted_path_or_jmespath(
        field: str, body: dict[str, object], text: str) -> None:
    assert endpoint(response_field=field).parse_body(json.dumps(body).encode()).content == text


def test_without_a_field_the_usual_keys_are_read_and_usage_by_its_path() -> None:
    ep = endpoint(usage_field="meta.usage")
    parsed = ep.parse_body(b'{"generated_text": "ok", "meta": {"usage": '
                           b'{"input_tokens": 3, "output_tokens": 1}}}')
    assert parsed == ParsedResponse("ok", 3, 1)
    openai = endpoint(response_field="a", usage_field="usage").parse_body(
        b'{"a": "x", "usage": {"prompt_tokens": 4, "completion_tokens": 2}}')
    assert (openai.prompt_tokens, openai.completion_tokens) == (4, 2)


def test_a_body_without_the_text_is_invalid_and_an_error_is_an_error() -> None:
    ep = endpoint(response_field="output.text")
    with pytest.raises(InvalidResponse, match=r"no text at output\.text"):
        ep.parse_body(b'{"output": {}}')
    with pytest.raises(InvalidResponse, match="the path failed"):
        endpoint(response_field="length(a)").parse_body(b'{"a": 5}')
    assert ep.parse_body(b'{"error": {"message": "overloaded"}}').error == "overloaded"
    assert ep.parse_body(b'{"output": {"text": ""}}').content == ""


def test_streamed_events() -> None:
    ep = endpoint(streaming=True, response_field="output.text", usage_field="usage")
    events = [b'{"output": {"text": " a"}}', b'{"output": {"text": ""}}', b'{"status": 1}',
              b'{"usage": {"input_tokens": 2, "output_tokens": 1}}']
    assert ep.parse_events(events) == [ParsedResponse(" a"), ParsedResponse(),
                                       ParsedResponse(), ParsedResponse(None, 2, 1)]
    assert ep.parse_events(events) == [ep.parse_event(e) for e in events]
    assert ep.parse_event(b'{"error": "boom"}').error == "boom"
    with pytest.raises(InvalidResponse):
        ep.parse_event(b'{"output": ')
    with pytest.raises(InvalidResponse, match="malformed JSON"):  # found in a whole stream
        ep.parse_events([events[0], b'{"output": {"text": "x"}', events[-1]])


def test_a_stream_without_done_ends_where_stream_end_field_says() -> None:
    ep = endpoint(streaming=True, response_field="content", stream_end_field="stop")
    assert ep.stream_ended(b'{"content": "", "stop": true, "tokens_predicted": 8}')
    assert not ep.stream_ended(b'{"content": " a", "stop": false}')
    assert not ep.stream_ended(b'{"content": " a"')
    assert not endpoint(streaming=True).stream_ended(b'{"stop": true}')  # [DONE] it is
    body = json.loads(endpoint(extra_inputs={"stream_end_field": "stop"}).encode(Turn("q", 1)))
    assert "stream_end_field" not in body


def test_settings_in_extra_inputs_are_checked_when_the_config_is_built() -> None:
    with pytest.raises(ValidationError, match="response_field: 'a\\[' is neither"):
        UserConfig(endpoint_type="template",
                   extra_inputs={"payload_template": TEMPLATE, "response_field": "a["})
    fixed = UserConfig(endpoint_type="template", extra_inputs={"payload_template": {"a": 1}})
    assert json.loads(fixed.extra_inputs["payload_template"]) == {"a": 1}


def test_a_template_file_in_extra_inputs_is_read_into_the_config(tmp_path: Path) -> None:
    file = tmp_path / "body.j2"
    file.write_text(TEMPLATE)
    config = UserConfig(endpoint_type="template", extra_inputs={"payload_template": str(file)})
    file.unlink()  # as on a remote worker: the config carries the template itself
    again = UserConfig.model_validate(config.model_dump())
    assert again.extra_inputs["payload_template"] == TEMPLATE
