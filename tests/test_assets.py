"Loading a packaged model leaves the process as it found it."
import os
import subprocess
import sys


def test_load_minilm_leaves_hf_hub_offline_alone():
    "The MiniLM loads from the package's folder without the hub (an endpoint that refuses every call) and sets no variable."
    code = ("import os\nfrom hanorec.assets import load_minilm\nst = load_minilm()\n"
            "print(st.encode(['Toy Story']).shape[1], os.environ.get('HF_HUB_OFFLINE'))")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HANOREC_PROGRESS="0")  # nothing listens on port 9: any hub call fails
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["384", "None"]
