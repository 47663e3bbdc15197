#!/usr/bin/env python3
"""make demo: boot a guest with device 13 and show the balloon working.

Boots Debian's 6.12 kernel under QEMU (TCG) with balloon13d attached as
device 13, has the guest touch most of its RAM, inflates the balloon to
512 MiB, withdraws it again, and prints the guest's and the host's view of
each step side by side.  Exits non-zero if any step does not do what it
says.
"""
import json
import os
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "scripts"))
import vm as V  # noqa: E402

MIB = 1 << 20
SYS = "/sys/bus/virtio/drivers/virtio_balloon13/virtio*"


def guest_view(vm):
    out = vm.run("cat %s/size_bytes; grep MemTotal /proc/meminfo" % SYS,
                 check=True)[1].split()
    return {"size": int(out[0]), "memtotal": int(out[2]) * 1024}


def host_view(vm, ctl):
    st = json.loads(subprocess.run(ctl + ["--json", "status"], check=True,
                                   capture_output=True, text=True).stdout)
    return st, vm.guest_ram_resident()


def row(step, g, st, resident):
    in_balloon = st["bytes_in_balloon"]
    print("%-22s | %9.0f MiB %10.0f MiB | %9.0f MiB %11.0f MiB"
          % (step, g["size"] / MIB, g["memtotal"] / MIB,
             in_balloon / MIB, resident / MIB))


def main():
    ko = subprocess.run(["bash", os.path.join(TOP, "scripts/build-module.sh"),
                         "6.12"], check=True, capture_output=True,
                        text=True).stdout.strip()
    subprocess.run(["make", "-s", "-C", TOP, "host"], check=True,
                   stdout=subprocess.DEVNULL)
    daemon = os.path.join(TOP, "host/balloon13d")
    with V.VM(series="6.12", mem="1536M", modules=[ko], backend=daemon,
              backend_args=["--control", "{tmpdir}/ctl.sock"]) as vm:
        ctl = [os.path.join(TOP, "host/balloon13ctl"), "--control",
               vm.path("ctl.sock")]
        print("guest booted in %.1f s (Linux %s, 1.5 GiB, QEMU TCG)"
              % (vm.boot_seconds, vm.kver))
        vm.run("modprobe virtio_balloon13", check=True)
        print(vm.run("dmesg | grep 'balloon ready'", check=True)[1].strip())
        print()
        print("%-22s | %-28s | %s" % ("", "guest: balloon   MemTotal",
                                        "host: in balloon  RAM resident"))
        print("-" * 80)
        row("module loaded", guest_view(vm), *host_view(vm, ctl))

        vm.run("memtouch 1100", timeout=300, check=True)
        row("guest touched 1.1 GiB", guest_view(vm), *host_view(vm, ctl))

        t = time.monotonic()
        subprocess.run(ctl + ["resize", "512M", "--wait", "--timeout", "300"],
                       check=True, stdout=subprocess.DEVNULL)
        took = time.monotonic() - t
        g = guest_view(vm)
        st, res = host_view(vm, ctl)
        row("inflated to 512 MiB", g, st, res)
        if g["size"] != 512 * MIB:
            sys.exit("demo: guest balloon is %d bytes, not 512 MiB" % g["size"])

        subprocess.run(ctl + ["resize", "0"], check=True,
                       stdout=subprocess.DEVNULL)
        for _ in range(120):
            if guest_view(vm)["size"] == 0:
                break
            time.sleep(0.5)
        row("deflated to 0", guest_view(vm), *host_view(vm, ctl))
        vm.run("memtouch 1100", timeout=300, check=True)
        row("guest touched it again", guest_view(vm), *host_view(vm, ctl))
        print("-" * 80)
        print("inflating 512 MiB took %.2f s" % took)
        print()
        print("guest debugfs counters:")
        print(vm.run("cat /sys/kernel/debug/virtio_balloon13/*/counters",
                     check=True)[1].rstrip())
        print()
        print("device status (balloon13ctl status):")
        print(subprocess.run(ctl + ["status"], check=True, capture_output=True,
                             text=True).stdout.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
