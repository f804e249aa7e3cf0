"""Exploration only (not collected): start a server, walk the flow, save screenshots."""
import sys, time
from pathlib import Path
from playwright.sync_api import sync_playwright
sys.path.insert(0, "/work/main")
from tests.e2e import conftest as c
from tests.e2e import flows as f
import tempfile, subprocess, shutil

tmp = Path(tempfile.mkdtemp())
feed = tmp / "cam.mjpeg"
subprocess.run(["ffmpeg","-hide_banner","-loglevel","error","-y","-loop","1","-i",str(c.PHOTOS/"fundus-left-eye.jpg"),"-t","2","-r","10","-vf","scale=-2:960,pad=1280:960:(ow-iw)/2:0:black","-q:v","3",str(feed)],check=True)
srv = c.start_server(tmp)
try:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=c.CHROMIUM, args=["--no-sandbox","--disable-gpu","--use-fake-device-for-media-stream","--use-fake-ui-for-media-stream",f"--use-file-for-fake-video-capture={feed}"])
        d = c.new_desktop(browser, srv)
        logs = []
        d.on("console", lambda m: logs.append(("desktop", m.type, m.text)))
        d.on("pageerror", lambda e: logs.append(("desktop", "pageerror", str(e))))
        c.shot(d, "x-desktop-start")
        sid = f.start_session(d, srv)
        time.sleep(1)
        c.shot(d, "x-desktop-session")
        url = f.pairing_url(d)
        p = c.new_phone(browser)
        p.on("console", lambda m: logs.append(("phone", m.type, m.text)))
        p.on("pageerror", lambda e: logs.append(("phone", "pageerror", str(e))))
        f.pair(p, url)
        time.sleep(1.5)
        c.shot(p, "x-phone-camera")
        c.shot(d, "x-desktop-paired")
        p.get_by_test_id("camera-capture").click()
        time.sleep(0.5)
        p.get_by_test_id("camera-capture").click()
        time.sleep(1)
        c.shot(p, "x-phone-camera-2")
        up = f.phone_photo(tmp/"big.jpg")
        p.get_by_test_id("file-input").set_input_files(str(tmp/"big.jpg"))
        time.sleep(2)
        c.shot(p, "x-phone-review")
        p.get_by_test_id("upload-all").click()
        p.get_by_test_id("upload-done").wait_for()
        c.shot(p, "x-phone-done")
        time.sleep(1.5)
        c.shot(d, "x-desktop-gallery")
        d.get_by_test_id("commit").click()
        time.sleep(0.5)
        c.shot(d, "x-desktop-confirm")
        d.get_by_test_id("commit-confirm").get_by_role("button", name="Commit").click()
        d.get_by_test_id("commit-result").wait_for()
        time.sleep(1)
        c.shot(d, "x-desktop-committed")
        time.sleep(1)
        c.shot(p, "x-phone-final")
        browser.close()
finally:
    srv.stop()
    for l in logs: print(l)
    print(srv.log.read_text()[-3000:])
