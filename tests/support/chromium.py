"""Loads a page in headless Chromium and reports what it shows.

Usage: chromium.py URL SCREENSHOT.png WAIT_SECONDS JS_EXPRESSION

Drives Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe),
with the standard library only: navigate, poll JS_EXPRESSION every 250 ms
until it returns a truthy value or WAIT_SECONDS pass, take a screenshot, and
print the last value as JSON on stdout. Used by the dashboard test, which
starts the scheduler and workers itself.
"""
import base64, json, os, shutil, subprocess, sys, tempfile, time

url, shot, wait, expr = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
to_chrome_r, to_chrome_w = os.pipe()
from_chrome_r, from_chrome_w = os.pipe()


def wire_fds():
    # Chromium reads commands on fd 3 and writes answers on fd 4. Duplicate
    # first: the pipes may themselves sit on fds 3 and 4.
    r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)
    os.dup2(r, 3)
    os.dup2(w, 4)


chrome = subprocess.Popen(
    ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
     "--disable-background-networking", "--disable-component-update", "--disable-sync",
     "--no-first-run", "--hide-scrollbars", "--window-size=1280,900",
     "--user-data-dir=" + (profile := tempfile.mkdtemp(prefix="rask-chromium-")),
     "--remote-debugging-pipe", "about:blank"],
    preexec_fn=wire_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.close(to_chrome_r)
os.close(from_chrome_w)
pending = b""
next_id = 0


def call(method, params=None, session=None, timeout=30):
    global next_id, pending
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
    end = time.time() + timeout
    while time.time() < end:
        while b"\0" not in pending:
            chunk = os.read(from_chrome_r, 1 << 20)
            if not chunk:
                raise SystemExit("chromium closed the DevTools pipe")
            pending += chunk
        raw, pending = pending.split(b"\0", 1)
        answer = json.loads(raw)
        if answer.get("id") == next_id:
            if "error" in answer:
                raise SystemExit(f"{method}: {answer['error']}")
            return answer.get("result", {})
    raise SystemExit(f"{method}: no answer")


try:
    page = [t for t in call("Target.getTargets")["targetInfos"] if t["type"] == "page"][0]
    session = call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
    call("Page.enable", session=session)
    call("Page.navigate", {"url": url}, session=session)
    value = None
    end = time.time() + wait
    while True:
        result = call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
        value = result.get("result", {}).get("value")
        if value or time.time() > end:
            break
        time.sleep(0.25)
    data = call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
    with open(shot, "wb") as f:
        f.write(base64.b64decode(data))
    print(json.dumps(value))
finally:
    chrome.kill()
    chrome.wait()
    shutil.rmtree(profile, ignore_errors=True)
