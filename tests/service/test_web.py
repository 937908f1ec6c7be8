"""The web page at /: served without the key, and driven in headless Chromium against a real
uvicorn on loopback.

The browser tests need Debian's Chromium (`apt-get install chromium`); Playwright drives it by
its path, since downloading Playwright's own browser is not possible everywhere. Without it they
skip with that reason, unless VAEGAN_REQUIRE_BROWSER=1 (CI sets it), where a missing browser fails.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image, ImageChops, ImageDraw

from model.checkpoint import load_checkpoint, save_checkpoint
from model.codec import Preprocessing, load_image_tensor, tensor_to_image
from tests.service.conftest import RunningServer, image_bytes, start_server

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture says what to install
    expect = None

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "service" / "web"
CHROMIUM = Path(
    os.environ.get("VAEGAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
KEY = "web-page-key"
UPLOAD_LIMIT = 100_000

FACE = image_bytes(colour=(200, 120, 40), size=(120, 150))
OTHER = image_bytes(colour=(30, 60, 200), size=(90, 90))


def _png(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": "image/png", "buffer": data}


def _pixels(data_url: str | None) -> Image.Image:
    assert data_url is not None and data_url.startswith("data:image/png;base64,"), data_url
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB")


def _max_difference(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size
    return max(high for _, high in ImageChops.difference(a, b).getextrema())


# --------------------------------------------------------------------------------------------
# servers and the browser


@pytest.fixture(scope="module")
def web_checkpoint(checkpoint_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's untrained model (with Smiling, Eyeglasses, Male vectors), its mu head
    rescaled: untrained, any two images encode to within ~1e-4 of each other and decode to the
    same picture, so the page's reconstructions and interpolations could not be told apart.
    Rescaled, inputs spread over the prior like a trained encoder's."""
    checkpoint = load_checkpoint(checkpoint_path)
    encoder = checkpoint.model.encoder
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(32, 3, 64, 64, generator=generator) * 2 - 1
    flat = torch.rand(32, 3, 1, 1, generator=generator).expand(-1, -1, 64, 64) * 2 - 1
    with torch.no_grad():
        mu = encoder(torch.cat([noise, flat])).mu  # (64, z)
        scale = 1.0 / mu.std(0).mean()
        encoder.mu.weight.mul_(scale)
        encoder.mu.bias.sub_(mu.mean(0)).mul_(scale)
    return save_checkpoint(
        tmp_path_factory.mktemp("web") / "spread.safetensors",
        checkpoint.model,
        preprocessing=checkpoint.preprocessing,
        step=1234,
        dataset={"kind": "celeba", "images": 80, "synthetic": {"count": 100, "seed": 3}},
        # The footer's preset is /model's `preset`, not read from this command line.
        recipe={"objective": "vaegan", "command": "vaegan-train fit --steps 1234"},
        # Male has a default strength of its own (the others fall back to 1): its slider reaches
        # further and marks it.
        attributes={
            name: dataclasses.replace(a, default_strength=2.5 if name == "Male" else None)
            for name, a in checkpoint.attributes.items()
        },
    )


@pytest.fixture(scope="module")
def web_server(web_checkpoint: Path) -> Iterator[RunningServer]:
    running = start_server(web_checkpoint, max_batch_delay_ms=1, max_upload_bytes=UPLOAD_LIMIT)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def keyed_server(web_checkpoint: Path) -> Iterator[RunningServer]:
    running = start_server(web_checkpoint, max_batch_delay_ms=1, api_key=KEY)
    yield running
    running.stop()


def _browser_missing() -> str | None:
    if expect is None:
        return 'the browser tests need Playwright: pip install -e ".[dev]"'
    if not CHROMIUM.is_file():
        return (
            f"the browser tests need Chromium at {CHROMIUM}: "
            "apt-get install chromium (or set VAEGAN_CHROMIUM to another Chromium)"
        )
    return None


# Module scope: Playwright's sync API owns an event loop while it runs, so it stops before the
# rest of the suite.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("VAEGAN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VAEGAN_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


class PageErrors:
    """Uncaught exceptions and console errors, less the browser's own line for each HTTP error
    (those are the API refusals the tests provoke on purpose)."""

    def __init__(self, page: Any) -> None:
        self.seen: list[str] = []
        page.on("pageerror", lambda error: self.seen.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.seen.append(f"console: {message.text}")


def open_page(browser: Any, server: RunningServer, **context: Any) -> tuple[Any, PageErrors]:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(15_000)
    errors = PageErrors(page)
    page.goto(server.url)
    return page, errors


@pytest.fixture
def page(browser: Any, web_server: RunningServer) -> Iterator[Any]:
    page, errors = open_page(browser, web_server, viewport={"width": 1280, "height": 900})
    expect(page.get_by_label("Smiling")).to_be_enabled(enabled=False)  # built, no face yet
    yield page
    page.context.close()
    assert errors.seen == []


def upload_face(page: Any, data: bytes = FACE, name: str = "face.png") -> None:
    page.locator("#face-file").set_input_files(_png(name, data))
    expect(page.locator("#face-message")).to_have_text(f"Reconstructed {name}.")


# --------------------------------------------------------------------------------------------
# plain HTTP: the files are served, open, typed and shipped


def test_page_and_static_files_are_served_without_the_key(keyed_server: RunningServer) -> None:
    with httpx.Client(base_url=keyed_server.url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        referenced = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
        assert sorted(referenced) == ["static/app.js", "static/favicon.svg", "static/style.css"]

        types = {
            "static/app.js": "text/javascript; charset=utf-8",
            "static/style.css": "text/css; charset=utf-8",
            "static/favicon.svg": "image/svg+xml",
        }
        for path, media_type in types.items():
            response = client.get(f"/{path}")
            assert response.status_code == 200, path
            assert response.headers["content-type"] == media_type
            assert response.content == (WEB / Path(path).name).read_bytes()
            again = client.get(f"/{path}", headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304 and again.content == b""

        assert client.get("/static/index.html").status_code == 404
        # Only the page's own files: no path reaches anything else in the package.
        for name in ("..%2Fapp.py", "..%2F__init__.py", "web", "app.js%00"):
            assert client.get(f"/static/{name}").status_code == 404, name
        assert client.get("/static/secrets.txt").json() == {
            "detail": "no static file 'secrets.txt'"
        }
        # The page is open; the API it calls and its docs are not; health is.
        assert client.get("/attributes").status_code == 401
        assert client.get("/health/ready").status_code == 200
        assert client.get("/docs").status_code == 401
        key = {"Authorization": f"Bearer {KEY}"}
        assert "/" not in client.get("/openapi.json", headers=key).json()["paths"]


def test_every_web_file_is_package_data() -> None:
    """A wheel (and so the Docker image) carries the page only if pyproject says so."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["service"]
    files = [path.relative_to(ROOT / "service").as_posix() for path in WEB.iterdir()]
    assert files
    for name in files:
        assert any(fnmatch(name, pattern) for pattern in patterns), name


# --------------------------------------------------------------------------------------------
# the page in Chromium


def celeba_aligned_face() -> bytes:
    """A 178x218 drawing, the size the service crops with CelebA's box (red outside it)."""
    image = Image.new("RGB", (178, 218), (220, 30, 30))
    draw = ImageDraw.Draw(image)
    draw.rectangle((15, 40, 162, 187), fill=(40, 90, 200))
    draw.ellipse((45, 60, 133, 170), fill=(240, 200, 160))
    draw.ellipse((65, 95, 80, 105), fill=(20, 20, 20))
    draw.ellipse((98, 95, 113, 105), fill=(20, 20, 20))
    draw.arc((70, 120, 108, 150), 20, 160, fill=(150, 0, 0), width=4)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_shows_the_input_as_the_model_sees_it_and_the_reconstruction(
    page: Any, web_server: RunningServer
) -> None:
    face = celeba_aligned_face()
    upload_face(page, face)
    shown = np.asarray(_pixels(page.locator("#face-input").get_attribute("src")), np.int16)
    model_input = tensor_to_image(load_image_tensor(face, Preprocessing(64)))
    assert shown.shape == (64, 64, 3)
    # The browser's resampling is not the codec's, but the crop and scale are the same.
    assert np.abs(shown - np.asarray(model_input, np.int16)).mean() < 3

    reconstruction = _pixels(page.locator("#face-decoded").get_attribute("src"))
    direct = httpx.post(f"{web_server.url}/reconstruct", files={"image": face}, timeout=30)
    assert _max_difference(reconstruction, Image.open(io.BytesIO(direct.content))) <= 2
    # No edits yet: the edited face is the reconstruction.
    assert page.locator("#face-edited").get_attribute("src") == page.locator(
        "#face-decoded"
    ).get_attribute("src")


def test_a_dropped_image_becomes_the_face(page: Any) -> None:
    dropped = page.evaluate_handle(
        """bytes => {
            const transfer = new DataTransfer();
            const file = new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"});
            transfer.items.add(file);
            return transfer;
        }""",
        list(OTHER),
    )
    page.locator("[data-drop='face']").dispatch_event("drop", {"dataTransfer": dropped})
    expect(page.locator("#face-message")).to_have_text("Reconstructed dropped.png.")
    expect(page.locator("#face-input")).to_have_attribute(
        "alt", re.compile("^dropped.png, cropped")
    )


def test_footer_describes_the_model(page: Any, web_checkpoint: Path) -> None:
    facts = {
        "preset": "small64",
        "dataset": "80 synthetic faces (generator seed 3)",
        "step": "1,234 steps (vaegan)",
        "device": "cpu",
        "checkpoint": re.compile(r"^spread\.safetensors · sha256 [0-9a-f]{12}$"),
    }
    for name, text in facts.items():
        expect(page.locator(f"[data-fact='{name}']")).to_have_text(text)


def test_sliders_edit_the_face_live_combine_and_reset(page: Any, web_server: RunningServer) -> None:
    upload_face(page)
    edited = page.locator("#face-edited")
    before = edited.get_attribute("src")

    smiling = page.get_by_label("Smiling")
    smiling.focus()
    page.keyboard.press("End")  # the keyboard moves sliders like the mouse
    expect(page.locator("output[for='attribute-0']")).to_have_text("+3.0")
    expect(edited).to_have_attribute("alt", "The face edited: Smiling +3.0")
    smiled = edited.get_attribute("src")
    assert smiled != before
    direct = httpx.post(
        f"{web_server.url}/attribute-edit",
        data={"attribute": "Smiling", "strength": "3"},
        files={"image": FACE},
        timeout=30,
    )
    assert _max_difference(_pixels(smiled), Image.open(io.BytesIO(direct.content))) <= 2

    page.get_by_label("Eyeglasses").fill("-1.5")
    expect(edited).to_have_attribute("alt", "The face edited: Smiling +3.0, Eyeglasses -1.5")
    assert edited.get_attribute("src") not in (before, smiled)

    page.get_by_role("button", name="Reset").click()
    expect(edited).to_have_attribute("alt", re.compile("no edits"))
    assert edited.get_attribute("src") == before
    for label in ("Smiling", "Eyeglasses", "Male"):
        expect(page.get_by_label(label)).to_have_value("0")


def test_sliders_mark_each_attributes_default_strength(page: Any) -> None:
    upload_face(page)
    male, smiling = page.get_by_label("Male"), page.get_by_label("Smiling")
    expect(male).to_have_attribute("max", "5")
    expect(smiling).to_have_attribute("max", "3")
    marks = page.locator(f"#{male.get_attribute('list')} option")
    assert [marks.nth(i).get_attribute("value") for i in range(marks.count())] == [
        "-2.5",
        "0",
        "2.5",
    ]


def test_samples_are_generated_and_one_becomes_the_face(
    page: Any, web_server: RunningServer
) -> None:
    page.get_by_label("Faces").fill("4")
    page.get_by_label("Seed").fill("7")
    page.get_by_role("button", name="Generate").click()
    tiles = page.locator("#samples img")
    expect(tiles).to_have_count(4)
    expect(page.locator("#sample-message")).to_have_text(
        "4 faces from seed 7. Select one to edit it."
    )
    direct = httpx.post(
        f"{web_server.url}/sample",
        params={"n": 4, "seed": 7},
        headers={"Accept": "application/json"},
        timeout=30,
    ).json()
    assert tiles.nth(2).get_attribute("src") == f"data:image/png;base64,{direct['images'][2]}"

    page.get_by_role("button", name="Edit sample 3").click()
    expect(page.get_by_role("button", name="Edit sample 3")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#face-decoded-caption")).to_have_text("Decoded from its latent code")
    sample = tiles.nth(2).get_attribute("src")
    assert page.locator("#face-input").get_attribute("src") == sample
    assert page.locator("#face-edited").get_attribute("src") == sample

    page.get_by_label("Smiling").fill("2")
    expect(page.locator("#face-edited")).to_have_attribute("alt", "The face edited: Smiling +2.0")
    assert page.locator("#face-edited").get_attribute("src") != sample


def test_interpolation_strip_between_two_faces(page: Any) -> None:
    page.locator("#end-a-file").set_input_files(_png("a.png", FACE))
    expect(page.locator("#interpolate-message")).to_have_text("Now choose B.")
    page.locator("#end-b-file").set_input_files(_png("b.png", OTHER))
    strip = page.locator("#strip img")
    expect(strip).to_have_count(8)
    first, last = strip.first.get_attribute("src"), strip.last.get_attribute("src")
    assert first != last

    page.get_by_label("Steps").fill("3")
    page.get_by_label("Steps").press("Enter")
    expect(strip).to_have_count(3)
    expect(strip.nth(1)).to_have_attribute("alt", "Step 2 of 3")
    assert strip.first.get_attribute("src") == first  # the same ends, fewer steps between

    # The edited face can be an end too.
    upload_face(page, OTHER, "other.png")
    page.get_by_label("Smiling").fill("1")
    expect(page.locator("#face-edited")).to_have_attribute("alt", re.compile("Smiling"))
    page.get_by_role("button", name="Use the current face").first.click()
    expect(strip.first).not_to_have_attribute("src", first)
    assert strip.first.get_attribute("src") == page.locator("#face-edited").get_attribute("src")


def test_api_errors_are_readable_messages(page: Any) -> None:
    message = page.locator("#face-message")
    assert message.get_attribute("aria-live") == "polite"
    upload_face(page)
    kept = page.locator("#face-decoded").get_attribute("src")

    page.locator("#face-file").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"this is not an image"}
    )
    expect(message).to_have_text(
        "That file is not an image the model can read. The data is not an image in a supported "
        "format (send PNG, JPEG, WebP, GIF, BMP or TIFF)."
    )
    expect(message).to_have_class(re.compile("error"))

    too_big = os.urandom(UPLOAD_LIMIT + 50_000)
    page.locator("#face-file").set_input_files(_png("huge.png", too_big))
    expect(message).to_have_text(
        "That file is too big. The request body is larger than the limit of "
        f"{UPLOAD_LIMIT:,} bytes."
    )
    # A refused upload leaves the face that was there.
    assert page.locator("#face-decoded").get_attribute("src") == kept

    page.locator("#end-a-file").set_input_files(_png("cut.png", FACE[:-12]))
    expect(page.locator("#interpolate-message")).to_contain_text("That image could not be read.")

    upload_face(page)
    expect(message).not_to_have_class(re.compile("error"))


def test_the_page_asks_for_the_api_key_once_and_keeps_it(
    browser: Any, keyed_server: RunningServer
) -> None:
    page, errors = open_page(browser, keyed_server)
    dialog = page.get_by_role("dialog", name="API key needed")
    key_field = page.get_by_label("API key", exact=True)
    needs_key = (
        "This service needs an API key. Use \u201cEnter the API key\u201d at the top to give it."
    )

    # Dismissed on arrival: the page says why it is empty, and asks again on the next request.
    expect(dialog).to_be_visible()
    expect(key_field).to_be_focused()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#notice")).to_have_text(needs_key)
    page.locator("#face-file").set_input_files(_png("face.png", FACE))
    expect(dialog).to_be_visible()
    key_field.fill("wrong")
    page.get_by_role("button", name="Use this key").click()
    expect(dialog).to_contain_text("did not accept that API key")
    key_field.fill(KEY)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#face-message")).to_have_text("Reconstructed face.png.")
    # The key also brings what the cancelled start could not load.
    expect(page.locator("[data-fact='device']")).to_have_text("cpu")
    expect(page.locator("#notice")).to_have_text("")
    page.get_by_label("Smiling").fill("1")
    expect(page.locator("#face-edited")).to_have_attribute("alt", re.compile("Smiling"))

    # Kept for the session: a reload does not ask again; forgetting it does.
    page.reload()
    expect(page.get_by_label("Smiling")).to_be_attached()
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Forget the API key").click()
    page.get_by_label("Faces").fill("2")
    page.get_by_role("button", name="Generate").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#sample-message")).to_have_text(needs_key)
    page.get_by_role("button", name="Enter the API key").click()
    key_field.fill(KEY)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Forget the API key")).to_be_visible()
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#samples img")).to_have_count(2)
    page.context.close()
    assert errors.seen == []


def test_phone_width_keyboard_and_labels(browser: Any, web_server: RunningServer) -> None:
    page, errors = open_page(
        browser, web_server, viewport={"width": 375, "height": 740}, is_mobile=True
    )
    expect(page.locator("[data-fact='preset']")).not_to_have_text("…")
    # Nothing is wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    # Every control has a label; the first Tab reaches the upload, and Space opens the picker.
    unlabelled = page.locator("input, button").evaluate_all(
        """elements => elements
            .filter(e => !(e.labels && e.labels.length) && !e.textContent.trim()
                         && !e.getAttribute('aria-label') && !e.querySelector('img[alt]'))
            .map(e => e.outerHTML)"""
    )
    assert unlabelled == []
    page.keyboard.press("Tab")
    expect(page.locator("#face-file")).to_be_focused()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(_png("face.png", FACE))
    expect(page.locator("#face-message")).to_have_text("Reconstructed face.png.")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.context.close()
    assert errors.seen == []


def test_screenshot_script_pictures_the_page(
    browser: Any, web_checkpoint: Path, tmp_path: Path
) -> None:
    """scripts/screenshot_web.py (the README's picture) still drives the page to the end."""
    out = tmp_path / "web-page.png"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "screenshot_web.py"),
            "--checkpoint",
            str(web_checkpoint),
            "--chromium",
            str(CHROMIUM),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    with Image.open(out) as picture:
        width, height = picture.size
    assert width == 1280 and height > 900


# --------------------------------------------------------------------------------------------
# the API docs: Swagger UI and ReDoc served from the package, nothing from elsewhere

DOCS_ASSETS = {
    "/docs/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "/docs/swagger-ui.css": "text/css; charset=utf-8",
    "/redoc/redoc.standalone.js": "text/javascript; charset=utf-8",
    "/redoc/logo-mini.svg": "image/svg+xml",
}


def test_the_docs_pages_reference_nothing_outside_the_service(web_server: RunningServer) -> None:
    with httpx.Client(base_url=web_server.url, timeout=30) as client:
        referenced = set()
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            # No address with a scheme at all, so no other origin.
            assert "://" not in page.text, path
            links = re.findall(r'(?:src|href|spec-url)="([^"]*)"', page.text)
            assert links, path
            for link in links:
                assert link.startswith("/") and not link.startswith("//"), (path, link)
            referenced |= set(links)

            policy = page.headers["content-security-policy"]
            assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert not re.search(r"https?:|\*", policy), policy
            scripts = re.search(r"script-src ([^;]*)", policy)
            assert scripts is None or "unsafe" not in scripts[1], policy
        assert referenced == {
            "/openapi.json",
            "/static/favicon.svg",
            "/docs/swagger-ui-bundle.js",
            "/docs/swagger-ui.css",
            "/redoc/redoc.standalone.js",
        }
        # Swagger UI's one inline script is allowed by its hash, not by 'unsafe-inline'.
        swagger = client.get("/docs").headers["content-security-policy"]
        assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/]+=*';", swagger), swagger


def test_the_docs_assets_are_the_packages_files_typed_and_open(
    keyed_server: RunningServer,
) -> None:
    from importlib import resources

    from service.routes.docs import ASSETS, ASSETS_PACKAGE

    assert set(ASSETS) == set(DOCS_ASSETS)
    shipped = resources.files(ASSETS_PACKAGE) / "static"
    with httpx.Client(base_url=keyed_server.url, timeout=30) as client:
        # The pages want the key; their scripts and styles are public files, like the web page's.
        assert client.get("/docs").status_code == 401
        assert client.get("/redoc").status_code == 401
        for path, media_type in DOCS_ASSETS.items():
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == media_type
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.content == (shipped / ASSETS[path][0]).read_bytes()
            again = client.get(path, headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
            head = client.head(path)
            assert head.status_code == 200 and head.content == b""
        for path in ("/docs/oauth2-redirect.html", "/redoc/redoc.standalone.js.map", "/docs/"):
            assert client.get(path).status_code == 404, path


def test_swagger_ui_and_redoc_render_without_internet(
    browser: Any, web_server: RunningServer
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    elsewhere: list[str] = []

    def only_this_service(route: Any) -> None:
        if route.request.url.startswith(f"{web_server.url}/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_service)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors = PageErrors(page)  # a CSP violation is a console error too

    page.goto(f"{web_server.url}/docs")
    expect(page.locator(".opblock-summary-path[data-path='/reconstruct']")).to_be_visible()
    expect(page.locator(".opblock-summary-path[data-path='/attribute-edit']")).to_be_visible()
    # Its requests reach the service from the page: GET /model, tried out.
    page.locator(".opblock-summary-path[data-path='/model']").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    answer = page.locator(".live-responses-table tbody .response")
    expect(answer.locator(".response-col_status")).to_have_text("200")
    expect(answer).to_contain_text('"sha256"')

    page.goto(f"{web_server.url}/redoc")
    expect(page.get_by_role("heading", name="Reconstruct a face")).to_be_visible()
    page.get_by_placeholder("Search...").fill("interpolate")  # the search worker runs
    expect(page.get_by_role("menuitem").filter(has_text="Walk the latent space")).not_to_have_count(
        0
    )
    context.close()
    assert elsewhere == []
    assert errors.seen == []
