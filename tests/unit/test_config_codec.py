"""Omap keys and values, secrets at rest, and keeping secrets out of logs."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from config_store_contract import INITIATOR, T1, build_sample, full_cipher, public_only_cipher, shared_key
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from gateway.config import codec
from gateway.config.crypto import NO_CIPHER, SecretCipher, generate_key_pair, load_cipher
from gateway.config.errors import SecretError
from gateway.config.model import ChapAuth, ClusterConfig


def sample() -> ClusterConfig:
    cfg = ClusterConfig()
    build_sample(cfg)
    return cfg


def test_every_entity_round_trips_through_its_key():
    cfg = sample()
    assert codec.decode(codec.encode(cfg)) == cfg


def test_key_components_with_slashes_stay_separate():
    key = codec.make_key("group", "iqn.2003-01.com.example:a/b", "g%1")
    assert key == "group/iqn.2003-01.com.example:a%2Fb/g%251"
    assert codec.split_key(key) == ("group", ["iqn.2003-01.com.example:a/b", "g%1"])


def test_keys_are_readable_in_rados_listomapkeys():
    keys = set(codec.encode(sample()))
    assert f"client/{T1}/{INITIATOR}" in keys and "lun/iqn.2003-01.com.example:t1/rbd/disk1" in keys


@pytest.mark.parametrize("key, blob", [
    ("unknown-kind/x", b"{}"),
    (f"client/{T1}/iqn.1994-05.com.example:x", b"{}"),  # orphan: its target does not exist
    ("target/iqn.2003-01.com.example:t9", b"not json"),
    ("lun/iqn.2003-01.com.example:t9/rbd", b"{}"),  # wrong arity
    ("disk/rbd/img", b"[1, 2]"),
])
def test_unplaceable_keys_are_kept_as_stray_not_dropped(key, blob):
    cfg = codec.decode({key: blob})
    assert cfg.stray == {key: blob}
    assert codec.encode(cfg)[key] == blob


def test_diff_writes_only_changed_keys_and_removes_deleted_ones():
    before = sample()
    after = before.copy()
    after.targets[T1].clients[INITIATOR].auth = ChapAuth("client1-user", "other-secret1")
    del after.disks["rbd/disk2"]
    del after.targets[T1].luns["rbd/disk2"]
    after.targets[T1].clients[INITIATOR].luns.clear()
    changed, removed = codec.diff(before, after)
    assert changed == {codec.client_key(T1, INITIATOR)}
    assert removed == {codec.disk_key("rbd/disk2"), codec.lun_key(T1, "rbd/disk2")}


def test_changed_entities_name_what_a_reconcile_loop_must_touch():
    before = sample()
    after = before.copy()
    after.targets[T1].luns["rbd/disk2"].owner = "gw1.example.com"
    del after.targets[T1].clients[INITIATOR]
    after.disks["rbd/disk3"] = after.disks["rbd/disk2"].__class__("rbd", "disk3", wwn="w3",
                                                                 backstore_object_name="rbd.disk3")
    assert codec.changed_entities(before, after) == [
        codec.EntityChange("removed", "client", (T1, INITIATOR)),
        codec.EntityChange("added", "disk", ("rbd/disk3",)),
        codec.EntityChange("changed", "lun", (T1, "rbd/disk2")),
    ]
    assert codec.changed_entities(after, after.copy()) == []


def test_encrypted_secrets_are_opened_and_reencryption_is_not_a_change():
    cfg = sample()
    stored = codec.encode(cfg, full_cipher())
    again = codec.encode(cfg, full_cipher())
    key = codec.client_key(T1, INITIATOR)
    assert stored[key] != again[key]  # RSA-OAEP is randomised...
    loaded = codec.decode(stored, cipher=full_cipher())
    assert loaded == cfg and codec.diff(loaded, cfg) == (set(), set())  # ...diffs are not


def test_secret_without_private_key_is_sealed_and_rewritten_verbatim():
    key = codec.client_key(T1, INITIATOR)
    stored = codec.encode(sample(), full_cipher())
    blind = codec.decode(stored, cipher=public_only_cipher())
    auth = blind.targets[T1].clients[INITIATOR].auth
    assert auth.password_sealed and auth.mutual_password_sealed
    rewritten = codec.encode(blind, public_only_cipher())[key]
    assert json.loads(rewritten)["auth"] == json.loads(stored[key])["auth"]


def test_repr_and_logs_never_show_chap_secrets(caplog):
    cfg = sample()
    client = cfg.targets[T1].clients[INITIATOR]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("client %s config %r", client, cfg)
    for text in (repr(client), str(client.auth), repr(cfg), caplog.text):
        assert "client1-secret" not in text and "target1-secret" not in text and "discovery-pw1" not in text
    assert "password=<set>" in repr(client.auth) and "username='client1-user'" in repr(client.auth)


# ---- crypto ----------------------------------------------------------------------------------
def test_secret_written_with_oaep_sha1_by_old_ceph_iscsi_still_decrypts():
    legacy = shared_key().public_key().encrypt(
        b"legacy-secret1", padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    assert full_cipher().decrypt(base64.b64encode(legacy).decode()) == "legacy-secret1"


def test_secret_encrypted_by_us_is_sha256_oaep_like_ceph_iscsi():
    sealed = full_cipher().encrypt("new-secret12")
    clear = shared_key().decrypt(base64.b64decode(sealed), padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    assert clear == b"new-secret12"


@pytest.mark.parametrize("sealed, message", [
    ("not base64!", "not base64"),
    (base64.b64encode(b"x" * 256).decode(), "does not decrypt with this private key"),
])
def test_bad_ciphertext_is_reported(sealed, message):
    with pytest.raises(SecretError, match=message):
        full_cipher().decrypt(sealed)


def test_cipher_needs_both_key_files(tmp_path):
    generate_key_pair(str(tmp_path))
    cipher = load_cipher(str(tmp_path), "iscsi-gateway.key", "iscsi-gateway-pub.key")
    assert cipher.can_encrypt and cipher.can_decrypt
    assert cipher.decrypt(cipher.encrypt("abcdefghijkl")) == "abcdefghijkl"
    assert (tmp_path / "iscsi-gateway.key").stat().st_mode & 0o077 == 0
    (tmp_path / "iscsi-gateway.key").unlink()
    assert load_cipher(str(tmp_path), "iscsi-gateway.key", "iscsi-gateway-pub.key") is NO_CIPHER


def test_unreadable_key_files_are_an_error_naming_them(tmp_path):
    (tmp_path / "k").write_text("garbage")
    (tmp_path / "k.pub").write_bytes(shared_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(SecretError, match="cannot load the CHAP key pair"):
        load_cipher(str(tmp_path), "k", "k.pub")


def test_cipher_repr_shows_no_key_material():
    assert repr(full_cipher()) == "SecretCipher(encrypt=True, decrypt=True)"
    assert repr(SecretCipher()) == "SecretCipher(encrypt=False, decrypt=False)"
