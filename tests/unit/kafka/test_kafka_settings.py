"""Kafka settings: validation and the kafka-python options they become (nothing connects)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

import dtpyfw.kafka
from dtpyfw.core.errors import MessagingError
from dtpyfw.kafka import KafkaSettings
from dtpyfw.kafka._client import consumer_config, producer_config, supports_headers


def test_exports_are_sorted_and_complete() -> None:
    """__all__ lists every public name of dtpyfw.kafka, sorted."""
    public = {n for n in vars(dtpyfw.kafka) if n.isidentifier() and not n.startswith("_")}
    assert dtpyfw.kafka.__all__ == sorted(dtpyfw.kafka.__all__)
    assert set(dtpyfw.kafka.__all__) == public


def test_producer_options() -> None:
    """acks, compression, batching, idempotence and timeouts reach KafkaProducer."""
    settings = KafkaSettings.model_validate(
        {
            "bootstrap_servers": "a:9092, b:9093",
            "api_version": "0.9",
            "producer": {"acks": 1, "compression": "gzip", "linger_ms": 20, "batch_size": 1},
        }
    )
    config = producer_config(settings)
    assert config["bootstrap_servers"] == ["a:9092", "b:9093"]
    assert config["api_version"] == (0, 9)
    assert (config["acks"], config["compression_type"], config["linger_ms"]) == (1, "gzip", 20)
    assert config["delivery_timeout_ms"] >= config["linger_ms"] + config["request_timeout_ms"]
    assert "sasl_mechanism" not in config


def test_consumer_options_commit_manually() -> None:
    """Consumers never auto-commit, and requests outlast the session timeout."""
    settings = KafkaSettings(consumer={"session_timeout": 45, "heartbeat_interval": 3})  # type: ignore[arg-type]
    config = consumer_config(settings, "billing", auto_offset_reset="latest")
    assert config["enable_auto_commit"] is False
    assert (config["group_id"], config["auto_offset_reset"]) == ("billing", "latest")
    assert config["request_timeout_ms"] > config["session_timeout_ms"]


def test_sasl_and_ssl_options() -> None:
    """SCRAM over SSL carries the credentials and the TLS files; secrets stay secret."""
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="pw",  # type: ignore[arg-type]
        ssl_cafile="/ca.pem",
    )
    config = producer_config(settings)
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("svc", "pw")
    assert config["ssl_cafile"] == "/ca.pem"
    assert config["ssl_check_hostname"] is True
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN"}, "not SASL"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
            },
            "sasl_password",
        ),
        ({"api_version": "zero"}, "api_version"),
        ({"consumer": {"session_timeout": 1, "heartbeat_interval": 2}}, "heartbeat"),
    ],
)
def test_invalid_settings(values: dict[str, object], match: str) -> None:
    """Incomplete SASL, a bad version or a heartbeat longer than the session are refused."""
    with pytest.raises(ValidationError, match=match):
        KafkaSettings.model_validate(values)


def test_compression_without_its_codec_names_the_package() -> None:
    """lz4 without the lz4 package fails with the install command (gzip needs nothing)."""
    pytest.importorskip("kafka")
    from kafka import codec

    if codec.has_lz4():
        pytest.skip("the lz4 package is installed here")
    with pytest.raises(MessagingError, match="pip install lz4"):
        producer_config(KafkaSettings(producer={"compression": "lz4"}))  # type: ignore[arg-type]


def test_headers_need_protocol_0_11() -> None:
    """Brokers older than 0.11 carry no record headers."""
    assert not supports_headers((0, 9))
    assert supports_headers((0, 11))
    assert supports_headers((2, 4))


def test_packages_import_without_the_extras() -> None:
    """dtpyfw.kafka, .messaging and .redis import without kafka-python or redis-py."""
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"kafka", "redis", "confluent_kafka"}:
                    raise ImportError(name)
                return None

        sys.meta_path.insert(0, Block())
        import dtpyfw.kafka, dtpyfw.messaging, dtpyfw.redis
        from dtpyfw.core.errors import DependencyMissing
        try:
            dtpyfw.kafka.Producer(dtpyfw.kafka.KafkaSettings()).client
        except DependencyMissing as exc:
            assert "pip install 'dtpyfw[kafka]'" in str(exc), exc
        else:
            raise AssertionError("no DependencyMissing")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_idempotence_implies_one_request_in_flight() -> None:
    """enable_idempotence alone is usable: max_in_flight becomes 1, as kafka-python requires."""
    settings = KafkaSettings.model_validate({"producer": {"enable_idempotence": True}})
    assert settings.producer.max_in_flight == 1
    options = producer_config(settings)
    assert options["enable_idempotence"] is True
    assert options["max_in_flight_requests_per_connection"] == 1
    assert KafkaSettings().producer.max_in_flight == 5  # unchanged without idempotence


def test_idempotence_with_settings_it_cannot_keep_is_refused_at_load() -> None:
    """Not at the first publish: every conflicting key is named when settings load."""
    with pytest.raises(ValidationError) as caught:
        KafkaSettings.model_validate(
            {"producer": {"enable_idempotence": True, "acks": 1, "retries": 0, "max_in_flight": 5}}
        )
    message = str(caught.value)
    assert "acks must be 'all'" in message
    assert "retries must be above 0" in message
    assert "max_in_flight must be 1 (got 5)" in message
