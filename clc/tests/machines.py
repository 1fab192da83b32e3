"""A classroom PC and the node controller it runs, as the host tests of the CLC use them."""

MAC = "52:54:00:3c:0f:7e"
NODE = {"role": "nc", "name": "pc-12", "ip": "10.0.9.12", "mac": MAC, "cluster": "cluster1",
        "api_url": "http://10.0.9.12:8000", "heartbeat_seconds": 5,
        "capacity": {"cpus": 4, "memory_mb": 8192, "disk_mb": 100000}}
