"""Start the ThingsBoard IoT Gateway for the benchmark; run with the python of its own venv (.peers/tb).

    .peers/tb/bin/python hil_tests/bench/tb_launch.py CONFIG_DIR

Its update check (a POST to the vendor's server at start-up and hourly, with no setting to turn it off)
becomes a no-op, and its logs go to ./logs at WARNING. Imports nothing of FieldLink.
"""

import json
import os
import shutil
import sys


def main() -> int:
    config_dir = os.path.abspath(sys.argv[1]) + os.sep
    import thingsboard_gateway
    from thingsboard_gateway.tb_utility import tb_updater

    tb_updater.TBUpdater.check_for_new_version = lambda self: None
    package_config = os.path.join(os.path.dirname(thingsboard_gateway.__file__), "config")
    with open(os.path.join(package_config, "logs.json")) as f:
        logs = json.load(f)
    for section in ("handlers", "loggers"):
        for item in logs.get(section, {}).values():
            if "level" in item:
                item["level"] = "WARNING"
    with open(config_dir + "logs.json", "w") as f:
        json.dump(logs, f)
    for name in ("list.json",):
        if not os.path.exists(config_dir + name):
            shutil.copy(os.path.join(package_config, name), config_dir + name)
    os.makedirs("logs", exist_ok=True)
    from thingsboard_gateway.gateway.tb_gateway_service import TBGatewayService

    TBGatewayService(config_dir + "tb_gateway.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
