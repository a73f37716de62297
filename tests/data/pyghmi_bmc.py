#!/usr/bin/env python3
"""A pyghmi BMC for tests: user admin / password on ADDR:PORT; power state
and boot device kept in memory; prints "ready" once listening.

usage: pyghmi_bmc.py ADDR PORT
"""
import sys

import pyghmi.ipmi.bmc as bmc


class Bmc(bmc.Bmc):
    def __init__(self, addr, port):
        super().__init__({'admin': 'password'}, port=port, address=addr)
        self.on = False
        self.bootdev = 'default'

    def get_power_state(self):
        return 'on' if self.on else 'off'

    def power_on(self):
        self.on = True

    def power_off(self):
        self.on = False

    def power_shutdown(self):
        self.on = False

    def power_reset(self):
        self.on = True

    def power_cycle(self):
        self.on = True

    def get_boot_device(self):
        return self.bootdev

    def set_boot_device(self, bootdevice):
        self.bootdev = bootdevice

    def cold_reset(self):
        pass


if __name__ == '__main__':
    b = Bmc(sys.argv[1], int(sys.argv[2]))
    print('ready', flush=True)
    b.listen()
