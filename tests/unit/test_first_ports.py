"""The first start's choice of a console port and port pool (``deploy.first_ports``), decided on a given set of
ports taken on the machine: the defaults while they are free, else the first free slot clear of the web port; a taken
web port, or no free slot, stops the start with what to set."""

from __future__ import annotations

import pytest

from deploy.first_ports import Choice, PortsTaken, choose_ports


def choose(taken: set[int], listen: str = "127.0.0.1:8000", environ: dict | None = None) -> Choice:
    return choose_ports(listen, environ or {}, in_use=taken.__contains__,
                        web_in_use=lambda port, _host: port in taken)


def test_free_defaults_are_kept_and_the_file_names_no_ports():
    choice = choose(set())
    assert choice == Choice()
    assert choice.ini_lines() == []


def test_a_taken_console_port_moves_the_console_and_the_pool_to_the_next_slot():
    # Another all-in-one holds its console port from its start, its pool only while VMs run: both move.
    choice = choose({6080})
    assert choice == Choice(console_port=6081, port_range=(7000, 7599))
    assert choice.ini_lines() == ["[clc]", "console_port = 6081", "[cc]", "port_range = 7000-7599"]


def test_one_taken_port_of_the_default_pool_moves_to_the_next_slot():
    assert choose({6789}) == Choice(console_port=6081, port_range=(7000, 7599))


def test_a_slot_whose_pool_holds_the_web_port_is_passed_over():
    # Slot 2's pool 7600-8199 holds 8000: two all-in-ones run, the third serves its pages on 8000.
    assert choose({6080, 6081}) == Choice(console_port=6083, port_range=(8200, 8799))
    assert choose({6080, 6081}, listen="127.0.0.1:9000") == Choice(console_port=6082, port_range=(7600, 8199))


def test_a_setting_given_in_the_environment_is_neither_chosen_nor_checked():
    assert choose({6080}, environ={"EDUCLOUD_CLC_CONSOLE_PORT": "6080"}) == Choice()
    assert choose({6500}, environ={"EDUCLOUD_CLC_CONSOLE_PORT": "7777"}) == Choice(port_range=(7000, 7599))
    assert choose({6080, 6500}, environ={"EDUCLOUD_CLC_CONSOLE_PORT": "0", "EDUCLOUD_CC_PORT_RANGE": "6400-6999"}) \
        == Choice()


def test_a_taken_web_port_stops_the_start_and_says_which_variable_to_set():
    with pytest.raises(PortsTaken, match=r"port 8000 is taken on this machine .* EDUCLOUD_LISTEN=127.0.0.1:8100"):
        choose({8000})


def test_no_free_slot_stops_the_start_naming_both_settings():
    with pytest.raises(PortsTaken, match="EDUCLOUD_CLC_CONSOLE_PORT and EDUCLOUD_CC_PORT_RANGE"):
        choose(set(range(6080, 6088)))


def test_a_listen_value_without_a_port_is_refused():
    with pytest.raises(PortsTaken, match="is not HOST:PORT"):
        choose(set(), listen="127.0.0.1")
