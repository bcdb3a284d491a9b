import httpx

from app.backends.waltero.emulator import SANDBOX_SETTINGS
from tests.support.servers import PYTHON, free_port, serve_process


def test_python_dash_m_serves_the_emulator_with_the_real_clock() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [PYTHON, "-m", "app.backends.waltero.emulator", "--port", str(port), "--token-ttl", "60"]
    with serve_process(argv, f"{base}/_sandbox/stats"):
        credentials = {
            "username": SANDBOX_SETTINGS["WALTERO_USERNAME"],
            "password": SANDBOX_SETTINGS["WALTERO_PASSWORD"],
        }
        with httpx.Client(base_url=base, trust_env=False) as client:
            token = client.post("/api/auth/login", json=credentials).json()["token"]
            me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
            assert client.get("/_sandbox/stats").json()["login"] == 1
