"""Configuration: file plus environment, the notes' peer files, and a clear error naming each wrong setting."""

import pytest

from luhyaapi.config import ConfigError, django_cache, django_database, load_config

BASE = {
    "EDUCLOUD_HOST_NAME": "node-1",
    "EDUCLOUD_ROLES": "nc",
    "EDUCLOUD_HOST_DATA_DIR": "/tmp/educloud-config-test",
    "EDUCLOUD_CLOUD_CC_URL": "http://10.0.0.1:8000",
    "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent",
}


def env(**changes):
    values = dict(BASE)
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def test_embedded_defaults_are_sqlite_in_process_bus_and_local_memory_cache():
    config = load_config(env())
    assert config.database_url == "sqlite:////tmp/educloud-config-test/educloud.sqlite3"
    assert config.bus_url == config.cloud_bus_url == "memory://"
    assert config.cache_url == "locmem://"
    assert django_database(config.database_url)["ENGINE"] == "django.db.backends.sqlite3"
    assert django_cache(config.cache_url)["BACKEND"].endswith("LocMemCache")


def test_production_urls_map_to_mysql_rabbitmq_and_memcached():
    config = load_config(env(EDUCLOUD_DATABASE_URL="mysql://root@127.0.0.1:3306/educloud",
                             EDUCLOUD_BUS_URL="amqp://guest:guest@127.0.0.1:5672/%2F",
                             EDUCLOUD_CACHE_URL="memcached://127.0.0.1:11211"))
    database = django_database(config.database_url)
    assert (database["ENGINE"], database["NAME"], database["HOST"], database["PORT"]) == (
        "django.db.backends.mysql", "educloud", "127.0.0.1", "3306")
    assert django_cache(config.cache_url)["BACKEND"].endswith("PyMemcacheCache")
    assert django_cache(config.cache_url)["LOCATION"] == "127.0.0.1:11211"


def test_file_values_are_read_and_environment_overrides_them(tmp_path):
    conf = tmp_path / "educloud.conf"
    conf.write_text("[host]\nname = from-file\nroles = clc\ndata_dir = /tmp/x\n[cloud]\nheartbeat_seconds = 60\n")
    config = load_config({"EDUCLOUD_CONF": str(conf), "EDUCLOUD_CLOUD_HEARTBEAT_SECONDS": "5"})
    assert config.name == "from-file"
    assert config.roles == ("clc",)
    assert config.heartbeat_seconds == 5.0
    assert config.source == str(conf)


def test_a_file_with_the_retired_cloud_key_says_what_replaced_it(tmp_path):
    conf = tmp_path / "educloud.conf"
    conf.write_text("[host]\nname = old\nroles = cc\ndata_dir = /tmp/x\n[cloud]\nkey = " + "f" * 20 + "\n")
    with pytest.raises(ConfigError, match="cloud.key is no longer a setting: every host has a key of its own"):
        load_config({"EDUCLOUD_CONF": str(conf)})


def test_the_retired_cloud_key_in_the_environment_says_what_replaced_it_too():
    with pytest.raises(ConfigError, match="EDUCLOUD_CLOUD_KEY is no longer a setting"):
        load_config(env(EDUCLOUD_CLOUD_KEY="k" * 32))


def test_notes_peer_files_give_the_boss_addresses(tmp_path):
    (tmp_path / "cc.conf").write_text("IP='10.1.2.3'\n")
    (tmp_path / "clc.conf").write_text("[server]\nIP=10.9.9.9\n")
    config = load_config(env(EDUCLOUD_CLOUD_CC_URL=None, EDUCLOUD_HOST_PEER_CONFIG_DIR=str(tmp_path)))
    assert config.cc_url == "http://10.1.2.3"
    assert config.clc_url == "http://10.9.9.9"


@pytest.mark.parametrize("changes, named", [
    ({"EDUCLOUD_HOST_NAME": None}, "host.name (EDUCLOUD_HOST_NAME): is required"),
    ({"EDUCLOUD_ROLES": "nc,dancer"}, "host.roles"),
    ({"EDUCLOUD_HOST_NAME": "Bad Name"}, "host.name"),
    ({"EDUCLOUD_HOST_IP": "10.0.0.300"}, "host.ip"),
    ({"EDUCLOUD_HOST_MAC": "zz:00"}, "host.mac"),
    ({"EDUCLOUD_HOST_JOIN_TOKEN": "not a token"}, "host.join_token"),
    ({"EDUCLOUD_CLOUD_CC_URL": None}, "cloud.cc_url (EDUCLOUD_CLOUD_CC_URL): is required for role nc"),
    ({"EDUCLOUD_BUS_URL": "kafka://x"}, "bus.url"),
    ({"EDUCLOUD_DATABASE_URL": "postgres://x/y"}, "database.url"),
    ({"EDUCLOUD_CACHE_URL": "redis://x"}, "cache.url"),
    ({"EDUCLOUD_HOST_LISTEN": "nowhere"}, "host.listen"),
    ({"EDUCLOUD_CLOUD_HEARTBEAT_SECONDS": "often"}, "cloud.heartbeat_seconds"),
])
def test_a_missing_or_wrong_setting_fails_naming_it(changes, named):
    with pytest.raises(ConfigError) as error:
        load_config(env(**changes))
    assert named in str(error.value)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(env(EDUCLOUD_CONF=str(tmp_path / "missing.conf")))


def test_unknown_settings_in_the_file_are_refused(tmp_path):
    conf = tmp_path / "educloud.conf"
    conf.write_text("[host]\nnmae = typo\n")
    with pytest.raises(ConfigError, match="unknown setting host.nmae"):
        load_config(env(EDUCLOUD_CONF=str(conf)))


def test_login_throttling_has_school_sized_defaults_and_can_be_set():
    config = load_config(env())
    assert (config.login_max_failures, config.login_max_failures_per_address, config.login_lockout_minutes) == (
        5, 100, 15)
    config = load_config(env(EDUCLOUD_CLC_LOGIN_MAX_FAILURES="3", EDUCLOUD_CLC_LOGIN_MAX_FAILURES_PER_ADDRESS="300",
                             EDUCLOUD_CLC_LOGIN_LOCKOUT_MINUTES="60"))
    assert (config.login_max_failures, config.login_max_failures_per_address, config.login_lockout_minutes) == (
        3, 300, 60)


@pytest.mark.parametrize(("variable", "value"), [
    ("EDUCLOUD_CLC_LOGIN_MAX_FAILURES", "0"), ("EDUCLOUD_CLC_LOGIN_MAX_FAILURES", "many"),
    ("EDUCLOUD_CLC_LOGIN_MAX_FAILURES_PER_ADDRESS", "0"), ("EDUCLOUD_CLC_LOGIN_LOCKOUT_MINUTES", "0"),
    ("EDUCLOUD_CLC_LOGIN_LOCKOUT_MINUTES", "1.5"),
])
def test_login_throttling_cannot_be_switched_off_or_set_to_nonsense(variable, value):
    setting = variable.removeprefix("EDUCLOUD_").lower().replace("_", ".", 1)
    with pytest.raises(ConfigError, match=rf"setting {setting} \({variable}\)"):
        load_config(env(**{variable: value}))


def test_sessions_end_after_half_an_hour_without_activity_unless_set_otherwise():
    assert load_config(env()).session_idle_minutes == 30
    assert load_config(env(EDUCLOUD_CLC_SESSION_IDLE_MINUTES="90")).session_idle_minutes == 90
    for wrong in ("0", "-5", "soon"):
        with pytest.raises(ConfigError, match=r"clc.session_idle_minutes \(EDUCLOUD_CLC_SESSION_IDLE_MINUTES\)"):
            load_config(env(EDUCLOUD_CLC_SESSION_IDLE_MINUTES=wrong))


def test_the_cpu_overcommit_defaults_to_four_and_a_class_of_idle_desktops_may_raise_it():
    assert load_config(env()).cpu_overcommit == 4
    assert load_config(env(EDUCLOUD_CC_CPU_OVERCOMMIT="16")).cpu_overcommit == 16
    for wrong in ("0.5", "many", "-2"):
        with pytest.raises(ConfigError, match="cc.cpu_overcommit"):
            load_config(env(EDUCLOUD_CC_CPU_OVERCOMMIT=wrong))
