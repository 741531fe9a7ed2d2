"""AWS KMS's behaviour, run against moto's server and against kmsd: the assertions are AWS's documented behaviour,
not kmsd's, so a test that passes on moto and fails on kmsd is kmsd's bug. Where moto itself departs from AWS the
test is skipped on moto, with the reason."""

import uuid

import pytest
from botocore.exceptions import ClientError


def moto_diverges(target, reason):
    """Skips the rest of a test on moto, where moto is known to depart from AWS's documented behaviour."""
    if target.name == "moto":
        pytest.skip(f"moto departs from AWS: {reason}")


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def new_key(kms, **kwargs):
    return kms.create_key(Description="parity", **kwargs)["KeyMetadata"]


def test_create_and_describe_key_report_aws_metadata(kms, target):
    meta = new_key(kms)
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:{target.account}:key/{meta['KeyId']}"
    assert meta["AWSAccountId"] == target.account
    assert meta["KeyState"] == "Enabled" and meta["Enabled"] is True
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert meta["Origin"] == "AWS_KMS"
    described = kms.describe_key(KeyId=meta["Arn"])["KeyMetadata"]
    assert described["KeyId"] == meta["KeyId"]
    assert described["Description"] == "parity"


def test_key_metadata_names_the_key_usage(kms, target):
    moto_diverges(target, "KeyMetadata has no KeyUsage unless CreateKey was given one")
    meta = new_key(kms)
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyUsage"] == "ENCRYPT_DECRYPT"


def test_encrypt_decrypt_round_trip_without_naming_the_key(kms, target):
    meta = new_key(kms)
    context = {"tenant": "acme", "purpose": "parity"}
    sealed = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"attack at dawn", EncryptionContext=context)
    assert sealed["KeyId"] == meta["Arn"]
    opened = kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext=context)
    assert opened["Plaintext"] == b"attack at dawn"
    assert opened["KeyId"] == meta["Arn"]
    moto_diverges(target, "Decrypt's response has no EncryptionAlgorithm")
    assert opened["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"


def test_a_wrong_context_is_an_invalid_ciphertext(kms):
    meta = new_key(kms)
    sealed = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x", EncryptionContext={"a": "1"})
    for context in [{"a": "2"}, {}, {"a": "1", "b": "2"}]:
        with pytest.raises(ClientError) as e:
            kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext=context)
        assert error_code(e) == "InvalidCiphertextException"


def test_decrypt_under_another_named_key_is_incorrect_key(kms, target):
    moto_diverges(target, "a ciphertext of another key than KeyId is AccessDeniedException")
    a, b = new_key(kms), new_key(kms)
    sealed = kms.encrypt(KeyId=a["KeyId"], Plaintext=b"x")
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], KeyId=b["KeyId"])
    assert error_code(e) == "IncorrectKeyException"


def test_generate_data_key_by_spec_or_size(kms):
    meta = new_key(kms)
    by_spec = kms.generate_data_key(KeyId=meta["Arn"], KeySpec="AES_256")
    assert len(by_spec["Plaintext"]) == 32
    assert by_spec["KeyId"] == meta["Arn"]
    assert kms.decrypt(CiphertextBlob=by_spec["CiphertextBlob"])["Plaintext"] == by_spec["Plaintext"]
    assert len(kms.generate_data_key(KeyId=meta["KeyId"], KeySpec="AES_128")["Plaintext"]) == 16
    assert len(kms.generate_data_key(KeyId=meta["KeyId"], NumberOfBytes=64)["Plaintext"]) == 64
    sealed = kms.generate_data_key_without_plaintext(
        KeyId=meta["KeyId"], KeySpec="AES_256", EncryptionContext={"k": "v"}
    )
    assert "Plaintext" not in sealed
    opened = kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext={"k": "v"})
    assert len(opened["Plaintext"]) == 32


def test_generate_data_key_needs_a_spec_or_a_size(kms, target):
    meta = new_key(kms)
    with pytest.raises(ClientError) as e:
        kms.generate_data_key(KeyId=meta["KeyId"])
    assert error_code(e) == "ValidationException"


def test_a_disabled_key_refuses_use_until_enabled(kms, target):
    moto_diverges(target, "Decrypt succeeds under a disabled key")
    meta = new_key(kms)
    sealed = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")
    kms.disable_key(KeyId=meta["KeyId"])
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    for call in [
        lambda: kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x"),
        lambda: kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"]),
        lambda: kms.generate_data_key(KeyId=meta["KeyId"], KeySpec="AES_256"),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "DisabledException"
    kms.enable_key(KeyId=meta["KeyId"])
    assert kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"])["Plaintext"] == b"x"


def test_a_key_pending_deletion_is_in_an_invalid_state(kms, target):
    moto_diverges(target, "ScheduleKeyDeletion answers the key id where AWS answers the key ARN")
    meta = new_key(kms)
    scheduled = kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)
    assert scheduled["KeyId"] == meta["Arn"]
    assert scheduled["KeyState"] == "PendingDeletion"
    described = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion" and "DeletionDate" in described
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")
    assert error_code(e) == "KMSInvalidStateException"
    assert kms.cancel_key_deletion(KeyId=meta["KeyId"])["KeyId"] == meta["Arn"]
    # As in AWS, a key whose deletion was cancelled comes back disabled.
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"


def test_the_deletion_window_is_7_to_30_days(kms, target):
    moto_diverges(target, "PendingWindowInDays is not checked")
    meta = new_key(kms)
    for days in [6, 31]:
        with pytest.raises(ClientError) as e:
            kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=days)
        assert error_code(e) == "ValidationException"


def test_an_unknown_key_is_not_found(kms, target):
    for key_id in [
        str(uuid.uuid4()),
        f"arn:aws:kms:us-east-1:{target.account}:key/{uuid.uuid4()}",
        "alias/does-not-exist",
    ]:
        with pytest.raises(ClientError) as e:
            kms.describe_key(KeyId=key_id)
        assert error_code(e) == "NotFoundException", key_id


def test_aliases_name_keys_by_name_and_by_arn(kms, target):
    meta = new_key(kms)
    name = f"alias/parity-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=name, TargetKeyId=meta["KeyId"])
    alias_arn = f"arn:aws:kms:us-east-1:{target.account}:{name}"
    listed = [a for a in kms.list_aliases(KeyId=meta["KeyId"])["Aliases"] if a["AliasName"] == name]
    assert len(listed) == 1
    assert listed[0]["AliasArn"] == alias_arn
    assert listed[0]["TargetKeyId"] == meta["KeyId"]
    for key_id in [name, alias_arn]:
        sealed = kms.encrypt(KeyId=key_id, Plaintext=b"by alias")
        assert sealed["KeyId"] == meta["Arn"]
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName=name, TargetKeyId=meta["KeyId"])
    assert error_code(e) == "AlreadyExistsException"
    kms.delete_alias(AliasName=name)
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId=name)
    assert error_code(e) == "NotFoundException"


def test_aws_managed_alias_names_are_reserved(kms, target):
    meta = new_key(kms)
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName="alias/aws/s3", TargetKeyId=meta["KeyId"])
    assert error_code(e) == "NotAuthorizedException"
    # AWS reserves the whole prefix, moto only the names of the managed keys it knows.
    moto_diverges(target, "only the known AWS managed aliases are reserved, not the alias/aws/ prefix")
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName="alias/aws/not-a-service", TargetKeyId=meta["KeyId"])
    assert error_code(e) == "NotAuthorizedException"


def test_re_encrypt_moves_a_ciphertext_to_another_key(kms):
    a, b = new_key(kms), new_key(kms)
    sealed = kms.encrypt(KeyId=a["KeyId"], Plaintext=b"moving", EncryptionContext={"n": "1"})
    moved = kms.re_encrypt(
        CiphertextBlob=sealed["CiphertextBlob"],
        SourceEncryptionContext={"n": "1"},
        DestinationKeyId=b["KeyId"],
        DestinationEncryptionContext={"n": "2"},
    )
    assert moved["SourceKeyId"] == a["Arn"] and moved["KeyId"] == b["Arn"]
    opened = kms.decrypt(CiphertextBlob=moved["CiphertextBlob"], EncryptionContext={"n": "2"})
    assert opened["Plaintext"] == b"moving" and opened["KeyId"] == b["Arn"]


def test_generate_random(kms):
    assert len(kms.generate_random(NumberOfBytes=32)["Plaintext"]) == 32
    with pytest.raises(ClientError) as e:
        kms.generate_random(NumberOfBytes=1025)
    assert error_code(e) == "ValidationException"


def test_list_keys_pages_with_limit_and_marker(kms, target):
    moto_diverges(target, "ListKeys ignores Limit")
    made = {new_key(kms)["KeyId"] for _ in range(3)}
    seen, marker, pages = [], None, 0
    while True:
        page = kms.list_keys(Limit=1, **({"Marker": marker} if marker else {}))
        pages += 1
        assert len(page["Keys"]) <= 1
        seen += [k["KeyId"] for k in page["Keys"]]
        for k in page["Keys"]:
            assert k["KeyArn"].endswith(f":key/{k['KeyId']}")
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        marker = page["NextMarker"]
    assert made <= set(seen)
    assert len(seen) == len(set(seen)), "no key twice"
    assert pages >= len(seen)
    everything = kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2})
    assert made <= {k["KeyId"] for page in everything for k in page["Keys"]}


def test_the_default_key_policy_is_named_default(kms):
    meta = new_key(kms)
    policy = kms.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")
    assert isinstance(policy["Policy"], str) and policy["Policy"]


def test_list_key_policies_names_the_default_policy(kms):
    meta = new_key(kms)
    listed = kms.list_key_policies(KeyId=meta["KeyId"])
    assert listed["PolicyNames"] == ["default"]
    assert listed["Truncated"] is False


def test_tags_are_added_replaced_listed_and_removed(kms):
    meta = new_key(kms, Tags=[{"TagKey": "team", "TagValue": "payments"}])

    def tags():
        return {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=meta["KeyId"])["Tags"]}

    assert tags() == {"team": "payments"}
    kms.tag_resource(KeyId=meta["Arn"], Tags=[{"TagKey": "env", "TagValue": "prod"},
                                              {"TagKey": "team", "TagValue": "billing"}])
    assert tags() == {"team": "billing", "env": "prod"}
    kms.untag_resource(KeyId=meta["KeyId"], TagKeys=["team", "not-there"])
    assert tags() == {"env": "prod"}


def test_rotation_is_enabled_with_a_period_and_disabled(kms, target):
    meta = new_key(kms)
    assert kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"] is False
    kms.enable_key_rotation(KeyId=meta["KeyId"], RotationPeriodInDays=180)
    status = kms.get_key_rotation_status(KeyId=meta["Arn"])
    assert status["KeyRotationEnabled"] is True
    kms.disable_key_rotation(KeyId=meta["KeyId"])
    assert kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"] is False
    moto_diverges(target, "GetKeyRotationStatus has no RotationPeriodInDays")
    kms.enable_key_rotation(KeyId=meta["KeyId"], RotationPeriodInDays=180)
    status = kms.get_key_rotation_status(KeyId=meta["KeyId"])
    assert status["RotationPeriodInDays"] == 180 and "NextRotationDate" in status


def test_rotation_periods_are_90_to_2560_days(target):
    moto_diverges(target, "RotationPeriodInDays is not checked")
    # botocore checks the range itself; with its checks off the request reaches the service, which must check too.
    kms = target.client(parameter_validation=False)
    meta = new_key(kms)
    for days in [89, 2561]:
        with pytest.raises(ClientError) as e:
            kms.enable_key_rotation(KeyId=meta["KeyId"], RotationPeriodInDays=days)
        assert error_code(e) == "ValidationException"


def test_on_demand_rotation_keeps_old_ciphertexts_and_is_listed(kms, target):
    meta = new_key(kms)
    before = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"before")
    # AWS documents the answer as identifying the key, without saying in which form (kmsd gives the ARN).
    assert kms.rotate_key_on_demand(KeyId=meta["KeyId"])["KeyId"] in (meta["KeyId"], meta["Arn"])
    assert kms.decrypt(CiphertextBlob=before["CiphertextBlob"])["Plaintext"] == b"before"
    after = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"after")
    assert kms.decrypt(CiphertextBlob=after["CiphertextBlob"])["Plaintext"] == b"after"
    moto_diverges(target, "ListKeyRotations lists no on-demand rotation")
    rotations = kms.list_key_rotations(KeyId=meta["KeyId"])["Rotations"]
    assert len(rotations) == 1 and "RotationDate" in rotations[0]


def test_update_alias_moves_it_to_another_key(kms):
    a, b = new_key(kms), new_key(kms)
    name = f"alias/moving-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=name, TargetKeyId=a["KeyId"])
    kms.update_alias(AliasName=name, TargetKeyId=b["Arn"])
    assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == b["KeyId"]
    assert kms.encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == b["Arn"]
    with pytest.raises(ClientError) as e:
        kms.update_alias(AliasName=f"alias/none-{uuid.uuid4().hex[:8]}", TargetKeyId=b["KeyId"])
    assert error_code(e) == "NotFoundException"


def test_update_key_description(kms):
    meta = new_key(kms)
    kms.update_key_description(KeyId=meta["Arn"], Description="renamed")
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["Description"] == "renamed"


def test_an_ecc_key_signs_and_verifies_and_describes_its_algorithms(kms, target):
    meta = new_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    assert (meta["KeySpec"], meta["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert meta["SigningAlgorithms"] == ["ECDSA_SHA_256"]
    signed = kms.sign(KeyId=meta["KeyId"], Message=b"release", MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
    assert signed["KeyId"] == meta["Arn"] and signed["SigningAlgorithm"] == "ECDSA_SHA_256"
    verified = kms.verify(KeyId=meta["KeyId"], Message=b"release", Signature=signed["Signature"],
                          SigningAlgorithm="ECDSA_SHA_256")
    assert verified["SignatureValid"] is True
    public = kms.get_public_key(KeyId=meta["KeyId"])
    moto_diverges(target, "GetPublicKey's response has no KeySpec")
    assert (public["KeyId"], public["KeySpec"], public["KeyUsage"]) == (meta["Arn"], "ECC_NIST_P256", "SIGN_VERIFY")
    assert public["SigningAlgorithms"] == ["ECDSA_SHA_256"]


def test_a_signature_of_another_message_is_invalid(kms, target):
    meta = new_key(kms, KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
    signed = kms.sign(KeyId=meta["KeyId"], Message=b"a", SigningAlgorithm="RSASSA_PSS_SHA_256")
    moto_diverges(target, "Verify answers SignatureValid false rather than KMSInvalidSignatureException")
    with pytest.raises(ClientError) as refused:
        kms.verify(KeyId=meta["KeyId"], Message=b"b", Signature=signed["Signature"],
                   SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert error_code(refused) == "KMSInvalidSignatureException"


def test_a_signing_key_does_not_encrypt(kms, target):
    meta = new_key(kms, KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")
    moto_diverges(target, "a SIGN_VERIFY key encrypts")
    with pytest.raises(ClientError) as refused:
        kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")
    assert error_code(refused) == "InvalidKeyUsageException"


def test_an_hmac_key_generates_and_verifies_macs(kms, target):
    meta = new_key(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    moto_diverges(target, "KeyMetadata has no MacAlgorithms")
    assert meta["MacAlgorithms"] == ["HMAC_SHA_256"]
    made = kms.generate_mac(KeyId=meta["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
    assert len(made["Mac"]) == 32 and made["MacAlgorithm"] == "HMAC_SHA_256"
    verified = kms.verify_mac(KeyId=meta["KeyId"], Message=b"m", Mac=made["Mac"], MacAlgorithm="HMAC_SHA_256")
    assert verified["MacValid"] is True
    with pytest.raises(ClientError) as refused:
        kms.verify_mac(KeyId=meta["KeyId"], Message=b"n", Mac=made["Mac"], MacAlgorithm="HMAC_SHA_256")
    assert error_code(refused) == "KMSInvalidMacException"


def test_a_data_key_pair_comes_with_its_private_key_sealed(kms, target):
    meta = new_key(kms)
    moto_diverges(target, "GenerateDataKeyPair of ECC_NIST_P256 is an internal error")
    pair = kms.generate_data_key_pair(KeyId=meta["KeyId"], KeyPairSpec="ECC_NIST_P256")
    assert (pair["KeyId"], pair["KeyPairSpec"]) == (meta["Arn"], "ECC_NIST_P256")
    assert pair["PublicKey"] and pair["PrivateKeyPlaintext"]
    opened = kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"])
    assert opened["Plaintext"] == pair["PrivateKeyPlaintext"]
    without = kms.generate_data_key_pair_without_plaintext(KeyId=meta["KeyId"], KeyPairSpec="RSA_2048")
    assert "PrivateKeyPlaintext" not in without and without["PublicKey"]


def test_an_external_key_waits_for_its_material(kms, target):
    meta = new_key(kms, Origin="EXTERNAL")
    moto_diverges(target, "a key of origin EXTERNAL is Enabled before any import")
    assert (meta["Origin"], meta["KeyState"]) == ("EXTERNAL", "PendingImport")
    params = kms.get_parameters_for_import(KeyId=meta["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                           WrappingKeySpec="RSA_2048")
    assert params["KeyId"] == meta["Arn"] and params["ImportToken"] and params["PublicKey"]
    with pytest.raises(ClientError) as refused:
        kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")
    assert error_code(refused) == "KMSInvalidStateException"
