"""Provenance read from real structures built here: C2PA manifests signed with a test certificate chain, XMP, PNG
text chunks, EXIF and the SD watermark embedded with invisible-watermark itself; damage in each place never raises."""
from __future__ import annotations

import datetime
import http.server
import io
import json
import struct
import threading

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin

from hub_utils.provenance import (
    SOURCE_TYPE_CLAIMS,
    WATERMARKS,
    Finding,
    Provenance,
    read_provenance,
    watermark_bits,
)

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
NO_PROVENANCE = "No provenance data in this file; most images have none, so this says nothing either way."


def image_bytes(fmt: str = "JPEG", size: int = 64, **save) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **save)
    return buffer.getvalue()


def only(data: bytes) -> Finding:
    findings = read_provenance(data).findings
    assert len(findings) == 1, findings
    return findings[0]


# ----------------------------------------------------------------------------------------------------------- C2PA

def certificate(subject: str, key, issuer: x509.Certificate | None, issuer_key, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Provenance Test Signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if not ca:  # C2PA wants an end-entity certificate with a signing EKU, issued by a CA (never self-signed)
        builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="session")
def signer_files() -> tuple[bytes, bytes]:
    """An ES256 chain (end-entity + test root, PEM) and its private key (PKCS#8 PEM)."""
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = certificate("Provenance Test Root", root_key, None, root_key, ca=True)
    leaf = certificate("Provenance Test Leaf", key, root, root_key, ca=False)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))
    return chain, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())


def sign(signer_files: tuple[bytes, bytes], source: bytes, tool: str, term: str, remote_url: str = "") -> bytes:
    chain, key = signer_files
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    manifest = {"claim_generator_info": [{"name": tool, "version": "1.0"}], "title": "test",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": IPTC + term, "softwareAgent": {"name": tool}}]}}]}
    signed = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        builder.sign(signer, "image/jpeg", io.BytesIO(source), signed)
    return signed.getvalue()


def test_c2pa_signed_manifest_names_the_generator_and_validates(signer_files) -> None:
    provenance = read_provenance(sign(signer_files, image_bytes(), "DALL-E 3", "trainedAlgorithmicMedia"))
    finding = provenance.summary
    assert (finding.mechanism, finding.claim, finding.tool, finding.detail) == (
        "c2pa", "generated", "DALL-E 3", "trainedAlgorithmicMedia")
    assert finding.signature_valid and finding.bound_to_bytes and finding.signer == "Provenance Test Signer"
    assert provenance.sentence == ("The file declares it was made with DALL-E 3 (Content Credentials signed by "
                                   "Provenance Test Signer, signature valid).")
    assert provenance.to_columns() == {
        "provenance_claim": "generated", "provenance_tool": "DALL-E 3", "provenance_mechanism": "c2pa",
        "provenance_signature_valid": "true", "provenance_bound_to_bytes": "true"}
    assert json.loads(json.dumps(provenance.to_dict()))["findings"][0]["signature_valid"] is True


def test_c2pa_pixels_changed_after_signing_break_the_binding(signer_files) -> None:
    signed = bytearray(sign(signer_files, image_bytes(), "DALL-E 3", "trainedAlgorithmicMedia"))
    signed[-20:-2] = bytes(b ^ 0xFF for b in signed[-20:-2])  # entropy-coded pixel data, just before EOI
    provenance = read_provenance(bytes(signed))
    assert provenance.summary.claim == "generated" and provenance.summary.bound_to_bytes is False
    assert "the file changed after signing" in provenance.sentence
    assert provenance.to_columns()["provenance_bound_to_bytes"] == "false"


@pytest.mark.parametrize(("term", "claim"), [("compositeWithTrainedAlgorithmicMedia", "edited"),
                                             ("digitalCapture", "camera"), ("digitalArt", "none")])
def test_c2pa_digital_source_types(signer_files, term, claim) -> None:
    finding = only(sign(signer_files, image_bytes(), "Test Tool", term))
    assert (finding.claim, finding.tool, finding.detail, finding.signature_valid) == (claim, "Test Tool", term, True)


def test_c2pa_camera_claim_is_worded_as_a_declaration(signer_files) -> None:
    sentence = read_provenance(sign(signer_files, image_bytes(), "Test Camera", "digitalCapture")).sentence
    assert sentence.startswith("The file declares it came from a camera") and "not proof of a real photo" in sentence


def test_c2pa_remote_manifest_is_never_fetched(signer_files) -> None:
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            requests.append(self.path)
            self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/manifest.c2pa"
        finding = only(sign(signer_files, image_bytes(), "Test Tool", "trainedAlgorithmicMedia", remote_url=url))
    finally:
        server.shutdown()
    assert finding.mechanism == "c2pa" and finding.claim == "unreadable"
    assert requests == []


def test_bogus_and_cut_c2pa_boxes_are_unreadable(signer_files) -> None:
    plain = image_bytes()
    box = b"JP\x00\x01\x00\x00\x00\x01" + struct.pack(">I", 40) + b"jumb" + struct.pack(">I", 24) + b"jumdc2pa"
    box += b"\x00" * 12 + b"\xde\xad" * 8
    bogus = plain[:2] + b"\xff\xeb" + struct.pack(">H", len(box) + 2) + box + plain[2:]  # an APP11 segment
    signed = sign(signer_files, plain, "DALL-E 3", "trainedAlgorithmicMedia")
    start = signed.find(b"jumb")
    for damaged in (bogus, signed[:start + 300] + signed[start + 600:]):
        assert only(damaged).claim == "unreadable"
        assert read_provenance(damaged).sentence.startswith("The file's provenance data (Content Credentials)")


# ------------------------------------------------------------------------------------------------------------ XMP

def xmp_packet(term: str = "", tool: str = "", as_element: bool = False) -> bytes:
    source = f'<Iptc4xmpExt:DigitalSourceType>{IPTC}{term}</Iptc4xmpExt:DigitalSourceType>' if as_element else ""
    attributes = f' Iptc4xmpExt:DigitalSourceType="{IPTC}{term}"' if term and not as_element else ""
    attributes += f' xmp:CreatorTool="{tool}"' if tool else ""
    return (f'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
            ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
            f'{attributes}>{source}</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()


@pytest.mark.parametrize(("term", "claim"), [*SOURCE_TYPE_CLAIMS.items(), ("digitalArt", "none")])
def test_xmp_iptc_digital_source_types(term, claim) -> None:
    finding = only(image_bytes(xmp=xmp_packet(term, "Test Tool 2.0")))
    assert (finding.mechanism, finding.claim, finding.tool, finding.detail) == ("xmp", claim, "Test Tool 2.0", term)


def test_xmp_as_elements_and_in_png() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet("trainedAlgorithmicMedia", as_element=True).decode())
    finding = only(image_bytes("PNG", pnginfo=info))
    assert (finding.mechanism, finding.claim) == ("xmp", "generated")
    assert read_provenance(image_bytes("PNG", pnginfo=info)).sentence == (
        "The file declares it was made with a generative AI tool (XMP metadata, unsigned).")


def test_xmp_creator_tool_alone_claims_nothing() -> None:
    provenance = read_provenance(image_bytes(xmp=xmp_packet(tool="Adobe Photoshop 25.0")))
    assert provenance.claim == "none" and provenance.summary.tool == "Adobe Photoshop 25.0"
    assert provenance.sentence == ("The file names Adobe Photoshop 25.0 (XMP metadata, unsigned) but declares nothing "
                                   "about how the image was made.")


@pytest.mark.parametrize("packet", [xmp_packet("trainedAlgorithmicMedia")[:150],
                                    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;'
                                    b'&a;&a;&a;&a;&a;&a;&a;">]><x>&b;&b;&b;&b;&b;&b;&b;&b;</x>'],
                         ids=["truncated", "entity-expansion"])
def test_broken_or_hostile_xmp_is_unreadable(packet) -> None:
    finding = only(image_bytes(xmp=packet))
    assert (finding.mechanism, finding.claim) == ("xmp", "unreadable")


# ------------------------------------------------------------------------------------------------------- PNG text

def png_with_text(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    return image_bytes("PNG", pnginfo=info)


WEBUI = ("a portrait photo\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, "
         "Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1")
COMFY_PROMPT = json.dumps({"4": {"class_type": "CheckpointLoaderSimple",
                                 "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
                           "3": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["4", 0]}}})


def test_webui_parameters_chunk() -> None:
    provenance = read_provenance(png_with_text(parameters=WEBUI))
    finding = provenance.summary
    assert (finding.mechanism, finding.claim, finding.tool, finding.model) == (
        "png-text", "generated", "Stable Diffusion WebUI", "v1-5-pruned-emaonly")
    assert provenance.sentence == ("The file declares it was made with Stable Diffusion WebUI and the model "
                                   "v1-5-pruned-emaonly (PNG text, unsigned).")


def test_comfyui_prompt_and_workflow_chunks_give_one_finding() -> None:
    finding = only(png_with_text(prompt=COMFY_PROMPT, workflow=json.dumps({"nodes": [], "links": []})))
    assert (finding.claim, finding.tool, finding.model) == ("generated", "ComfyUI", "sd_xl_base_1.0.safetensors")


@pytest.mark.parametrize("chunks", [{"parameters": "not the WebUI format"}, {"prompt": COMFY_PROMPT[:40]},
                                    {"workflow": "[1, 2]"}])
def test_garbage_generator_chunks_are_unreadable(chunks) -> None:
    finding = only(png_with_text(**chunks))
    assert (finding.mechanism, finding.claim) == ("png-text", "unreadable")


# ----------------------------------------------------------------------------------------------------------- EXIF

def exif_jpeg(tags: dict[int, str], user_comment: bytes = b"") -> bytes:
    exif = Image.Exif()
    exif.update(tags)
    if user_comment:
        exif.get_ifd(0x8769)[0x9286] = user_comment
    return image_bytes(exif=exif)


def test_exif_camera_is_a_declaration() -> None:
    provenance = read_provenance(exif_jpeg({271: "Canon", 272: "Canon EOS 5D Mark IV", 305: "Firmware 1.0"}))
    finding = provenance.summary
    assert (finding.mechanism, finding.claim, finding.tool, finding.detail) == (
        "exif", "camera", "Canon EOS 5D Mark IV", "software: Firmware 1.0")
    assert provenance.sentence == ("The file declares it came from a camera, Canon EOS 5D Mark IV (EXIF, unsigned); "
                                   "a declaration anyone can write, not proof of a real photo.")


def test_exif_software_alone_claims_nothing() -> None:
    finding = only(exif_jpeg({305: "GIMP 2.10.36"}))
    assert (finding.claim, finding.tool) == ("none", "GIMP 2.10.36")


@pytest.mark.parametrize(("tags", "comment", "tool"), [
    ({}, b"UNICODE\x00" + WEBUI.encode("utf-16-be"), "Stable Diffusion WebUI"),  # WebUI's JPEG output
    ({272: f"prompt:{COMFY_PROMPT}", 271: "workflow:{}"}, b"", "ComfyUI"),  # ComfyUI's WebP/JPEG output
])
def test_generators_writing_exif(tags, comment, tool) -> None:
    finding = only(exif_jpeg(tags, comment))
    assert (finding.mechanism, finding.claim, finding.tool) == ("exif", "generated", tool)


def test_broken_exif_never_raises() -> None:
    data = exif_jpeg({271: "Canon", 272: "EOS"})
    start = data.find(b"Exif\x00\x00")
    for damaged in (data[:start + 6] + b"ZZ" + data[start + 8:], data[:start + 10] + b"\xff" * 40 + data[start + 50:]):
        assert read_provenance(damaged).claim in ("none", "unreadable")


# ------------------------------------------------------------------------------------------------------ watermark

def watermarked(message: str, **save) -> bytes:
    """A 512x512 photo with the SD (bytes) or SDXL (bits) watermark embedded by invisible-watermark itself."""
    imwatermark = pytest.importorskip(
        "imwatermark", reason="invisible-watermark is not installed: pip install --no-deps invisible-watermark==0.2.0 "
                              "PyWavelets==1.9.0 (see docs/provenance.md)")
    from skimage import data

    bgr = np.ascontiguousarray(np.asarray(Image.fromarray(data.astronaut()).resize((512, 512)))[:, :, ::-1])
    encoder = imwatermark.WatermarkEncoder()
    if message == "Stable Diffusion":
        encoder.set_watermark("bytes", b"StableDiffusionV1")
    else:
        encoder.set_watermark("bits", [int(b) for b in WATERMARKS[message]])
    buffer = io.BytesIO()
    Image.fromarray(encoder.encode(bgr, "dwtDct")[:, :, ::-1]).save(buffer, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("tool", list(WATERMARKS))
def test_sd_watermark_embedded_by_the_library_is_found(tool) -> None:
    provenance = read_provenance(watermarked(tool, format="PNG"))
    finding = provenance.summary
    assert (finding.mechanism, finding.claim, finding.tool) == ("watermark", "generated", tool)
    assert provenance.sentence.startswith(f"The pixels carry the invisible watermark that {tool} adds")
    lossless = watermarked(tool, format="JPEG", quality=95, subsampling=0)  # 4:4:4 keeps it
    assert read_provenance(lossless).summary.tool == tool
    assert read_provenance(watermarked(tool, format="JPEG", quality=95)).findings == ()  # 4:2:0 erases it: not read


def test_decoder_matches_the_library_bit_for_bit() -> None:
    imwatermark = pytest.importorskip("imwatermark", reason="invisible-watermark is not installed (docs/provenance.md)")
    from skimage import data

    images = [np.asarray(Image.open(io.BytesIO(watermarked("Stable Diffusion", format="PNG"))).convert("RGB")),
              np.asarray(Image.fromarray(data.astronaut()).resize((300, 420))),
              np.random.default_rng(1).integers(0, 256, (258, 270, 3), dtype=np.uint8)]
    for rgb in images:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        for length in (136, 48, 32):
            expected = np.asarray(imwatermark.WatermarkDecoder("bits", length).decode(bgr, "dwtDct"), bool)
            assert np.array_equal(watermark_bits(bgr, length), expected)


def test_plain_photos_carry_no_watermark(astronaut) -> None:
    for fmt in ("PNG", "BMP"):
        buffer = io.BytesIO()
        astronaut.save(buffer, fmt)
        assert read_provenance(buffer.getvalue()).findings == ()


def test_pixels_already_decoded_give_the_same_record(astronaut) -> None:
    buffer = io.BytesIO()
    astronaut.save(buffer, "PNG", pnginfo=PngImagePlugin.PngInfo())
    data = buffer.getvalue()
    assert read_provenance(data, astronaut) == read_provenance(data) == read_provenance(data, astronaut.resize((9, 9)))


def test_truncated_pixels_leave_the_metadata_readable() -> None:
    data = png_with_text(parameters=WEBUI)
    big = image_bytes("PNG", size=512, pnginfo=PngImagePlugin.PngInfo())
    provenance = read_provenance(data[:-40])
    assert provenance.claim == "generated"
    assert read_provenance(big[: len(big) // 2]).claim in ("none", "unreadable")


# ---------------------------------------------------------------------------------------------------- the record

@pytest.mark.parametrize("data", [b"", b"not an image at all", b"c2pa jumb" * 20, b"\x89PNG\r\n\x1a\n" + b"\x00" * 30,
                                  b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*"])
def test_non_images_never_raise(data) -> None:
    provenance = read_provenance(data)
    assert provenance.claim in ("none", "unreadable") and isinstance(provenance.sentence, str)


def test_empty_record() -> None:
    provenance = read_provenance(image_bytes())
    assert provenance == Provenance() and provenance.claim == "none" and provenance.sentence == NO_PROVENANCE
    assert provenance.to_dict() == {"claim": "none", "tool": "", "mechanism": "", "sentence": NO_PROVENANCE,
                                    "findings": []}
    assert set(provenance.to_columns().values()) == {"none", ""}


def test_summary_takes_the_strongest_claim_then_the_most_trusted_mechanism() -> None:
    camera = Finding("exif", "camera", "Canon EOS R5")
    xmp = Finding("xmp", "generated", "Firefly")
    c2pa_claim = Finding("c2pa", "generated", "Firefly", signature_valid=True, bound_to_bytes=True)
    assert Provenance((camera, Finding("png-text", "unreadable"), xmp)).summary == xmp
    assert Provenance((camera, xmp, c2pa_claim)).summary == c2pa_claim
    assert Provenance((Finding("xmp", "unreadable"), camera)).claim == "camera"
