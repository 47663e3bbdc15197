#!/usr/bin/python3
"""The Debian package, as a Debian administrator meets it.

    python3 tests/deb/test_deb.py [--tap FILE] [--series 6.1,6.12] [--keep]

Builds virtio-balloon13-dkms with scripts/make-deb.sh, installs it with
apt (DKMS builds the module for every installed kernel with headers),
boots a VM of each kernel series with the module DKMS built for that
kernel, and purges the package again.  TAP results (scripts/tap.py):

  deb/build            make deb gives one _all.deb with dkms.conf and the
                       kernel sources under /usr/src/virtio-balloon13-<v>/
  deb/install          apt installs it; dpkg says installed
  deb/all-kernels      every kernel in /lib/modules with headers has the
                       module installed by DKMS (dkms status "installed")
  deb/dkms/<series>    that series' kernel has .../updates/dkms/
                       virtio_balloon13.ko, its vermagic names the kernel,
                       modinfo's version is the package's
  deb/vm/<series>      a VM of that kernel with exactly that .ko: modprobe
                       binds device 13 (balloon13d), /sys/module/
                       virtio_balloon13/version is the package's, a 64 MiB
                       RESIZE is reached and MemTotal drops by exactly that
  deb/remove           apt purge: the package, its /usr/src tree, DKMS's
                       tree and every built module are gone, and no
                       modules.dep names the module

A series whose kernel has no headers package for bookworm (7.2: unstable's
linux-kbuild-7.2 needs unstable's libc) gets its headers the way a
packaged kernel lays them out: /lib/modules/<release>/build pointing at the
kernel build tree scripts/fetch-kernels.sh prepared, made for the test and
removed after it, so DKMS builds for it as for an installed kernel.

A DKMS install of virtio-balloon13 already on the machine (the user's) is
never touched: then everything after deb/build is a SKIP.  Exit status 1
if anything failed.  Python 3 standard library only.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "scripts"))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
import tap  # noqa: E402
import e2elib  # noqa: E402
from e2elib import MiB, Fail, Guest, check, check_eq, say, vmlib  # noqa: E402
import devices  # noqa: E402

PKG = "virtio-balloon13-dkms"
NAME = "virtio-balloon13"           # the DKMS module name
CACHE = os.environ.get("VB13_CACHE", "/var/cache/virtio_balloon13")


def sh(*argv, ok=(0,), **kw):
    """Run a host command -> its combined output; Fail on another status."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, **kw)
    if ok is not None and p.returncode not in ok:
        raise Fail("%s exited %d: %s" % (" ".join(argv), p.returncode,
                                          " | ".join(p.stdout.strip().splitlines()[-6:])))
    return p.stdout


def lib(fn):
    """A scripts/lib.sh function's output."""
    return sh("bash", "-c", '. "%s/scripts/lib.sh"; %s' % (TOP, fn)).strip()


def kernel_env(series):
    env = {}
    with open(os.path.join(CACHE, "kernels", "%s.env" % series)) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            env[k] = v
    return env


def module_path(kver):
    found = glob.glob("/lib/modules/%s/updates/dkms/virtio_balloon13.ko*" % kver)
    return found[0] if found else None


def installed_elsewhere():
    """Why the machine has a virtio-balloon13 DKMS install of its own, or None."""
    st = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PKG],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        text=True).stdout
    if "installed" in st.split():
        return "%s is installed on this machine (%s): left alone" % (PKG, st)
    dk = sh("dkms", "status", "-m", NAME, ok=None).strip()
    if dk:
        return "DKMS already has %s (%s): left alone" % (NAME, dk.splitlines()[0])
    if glob.glob("/usr/src/%s-*" % NAME):
        return "/usr/src/%s-* exists: left alone" % NAME
    return None


def provide_headers(series):
    """/lib/modules/<release>/build for series lacking installed headers.

    Returns the directories made, for remove_headers() to take away again.
    """
    made = []
    for s in series:
        env = kernel_env(s)
        mod = "/lib/modules/%s" % env["KVER"]
        if os.path.exists(os.path.join(mod, "build", "include")):
            continue
        check(not os.path.exists(mod), "%s exists without headers" % mod)
        check(os.path.isdir(os.path.join(env.get("KDIR", ""), "include")),
              "no prepared kernel build tree for %s (%s)" % (s, env.get("KDIR")))
        os.makedirs(mod)
        made.append(mod)
        os.symlink(env["KDIR"], os.path.join(mod, "build"))
        say("deb: %s headers from %s" % (env["KVER"], env["KDIR"]))
    return made


def remove_headers(made):
    for mod in made:
        subprocess.run(["rm", "-rf", "--one-file-system", mod], check=False)


def leftovers():
    """What of the package is still on the machine."""
    left = glob.glob("/usr/src/%s-*" % NAME) + glob.glob("/var/lib/dkms/%s" % NAME)
    left += glob.glob("/lib/modules/*/updates/dkms/virtio_balloon13.ko*")
    # depmod's index (dkms remove runs depmod) must not name it either.
    for dep in glob.glob("/lib/modules/*/modules.dep"):
        with open(dep) as f:
            if "virtio_balloon13" in f.read():
                left.append(dep + " names virtio_balloon13")
    st = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PKG],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        text=True).stdout
    if st.strip() and "not-installed" not in st:
        left.append("dpkg status '%s'" % st.strip())
    return left


def vm_test(series, ko, version, keep):
    """Boot series' kernel with ko, bind device 13, resize 64 MiB."""
    dev = devices.make("vu")
    e2elib.group("deb-" + series, mem="768M")
    cfg = e2elib.GROUPS["deb-" + series]
    vm = vmlib.VM(series=series, mem=cfg["mem"], modules=[ko], keep_tmp=keep,
                  **dev.vm_kwargs(cfg))
    vm.start()
    try:
        g = Guest(vm, dev, series, cfg)
        dev.attach(g)
        g.base_memtotal = g.meminfo()["MemTotal"]
        g.modprobe()
        got = g.sh("cat /sys/module/virtio_balloon13/version").strip()
        check_eq(got, version, "/sys/module/virtio_balloon13/version")
        where = g.sh("modinfo -n virtio_balloon13").strip()
        check(where.startswith("/lib/modules/%s/extra/" % vm.kver),
              "modprobe found %s, not the package's module" % where)
        check(g.resize(64 * MiB, wait=True), "resize to 64 MiB not reached")
        st = g.wait_size(64 * MiB)
        check_eq(st["mem"]["MemTotal"], g.base_memtotal - 64 * MiB, "MemTotal")
        g.check_dmesg_clean(g.new_dmesg(None))
        say("deb: %s: %s bound, version %s, 64 MiB ballooned"
            % (series, st["devs"][0], got))
    finally:
        vm.close()


def main():
    p = argparse.ArgumentParser(prog="tests/deb/test_deb.py",
                                description="the virtio-balloon13-dkms package")
    p.add_argument("--tap", metavar="FILE", default=os.environ.get("VB13_TAP"),
                   help="write the TAP results to FILE (and show them on "
                   "stdout); default $VB13_TAP (make check sets it)")
    p.add_argument("--series", default=None,
                   help="kernel series to boot (default: scripts/lib.sh's VB13_SERIES)")
    p.add_argument("--keep", action="store_true", help="keep the VMs' temp dirs")
    a = p.parse_args()
    series = (a.series.split(",") if a.series
              else lib('echo "${VB13_SERIES[@]}"').split())
    ids = (["deb/build", "deb/install", "deb/all-kernels"]
           + ["deb/dkms/" + s for s in series] + ["deb/vm/" + s for s in series]
           + ["deb/remove"])
    out = tap.Writer(a.tap, echo=sys.stdout) if a.tap else tap.Writer(sys.stdout)
    out.plan(len(ids))
    done = set()
    failed = False

    def result(tid, func):
        nonlocal failed
        t0 = time.monotonic()
        try:
            func()
        except (Fail, vmlib.VMError, OSError) as e:
            out.not_ok(tid, str(e)[:600])
            failed = True
            done.add(tid)
            return False
        out.ok(tid)
        done.add(tid)
        say("%s: %.1f s" % (tid, time.monotonic() - t0))
        return True

    def rest(why, fail=False):
        nonlocal failed
        for tid in ids:
            if tid not in done:
                if fail:
                    out.not_ok(tid, why)
                    failed = True
                else:
                    out.skip(tid, why)
                done.add(tid)

    state = {}

    def build():
        deb = sh("bash", os.path.join(TOP, "scripts", "make-deb.sh")).strip().splitlines()[-1]
        check(deb.endswith("_all.deb") and os.path.isfile(deb), "no .deb: %s" % deb)
        state["deb"] = deb
        state["version"] = lib("vb13_version")
        files = sh("dpkg-deb", "-c", deb)
        src = "./usr/src/%s-%s/" % (NAME, state["version"])
        check(src + "dkms.conf" in files, "no %sdkms.conf in the package" % src)
        for f in lib("vb13_kernel_files").split():
            check(src + f in files, "the package lacks %s%s" % (src, f))
        outside = [ln.split()[-1] for ln in files.splitlines()
                   if not ln.endswith("/") and src not in ln
                   and "/usr/share/doc/" not in ln]
        check(not outside, "files outside %s: %s" % (src, outside[:5]))

    if not result("deb/build", build):
        rest("the package did not build", fail=True)
        out.close()
        return 1
    why = installed_elsewhere()
    if why:
        rest(why)
        out.close()
        return 0
    ver = state["version"]
    sh("make", "-s", "-C", TOP, "host")     # balloon13d for the VMs
    made = []

    def install():
        made.extend(provide_headers(series))
        sh("apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=900",
           "--no-install-recommends", state["deb"],
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        st = sh("dpkg-query", "-W", "-f=${Status}", PKG)
        check_eq(st, "install ok installed", "dpkg status")

    try:
        if not result("deb/install", install):
            rest("not installed", fail=True)
            return 1

        def all_kernels():
            kvers = sorted(os.path.basename(os.path.dirname(b))
                           for b in glob.glob("/lib/modules/*/build")
                           if os.path.exists(os.path.join(b, "include")))
            check(kvers, "no kernel headers in /lib/modules/*/build")
            status = sh("dkms", "status", "-m", NAME, "-v", ver)
            missing = [k for k in kvers
                       if not re.search(r"%s, x86_64: installed" % re.escape(k), status)]
            check(not missing, "not installed for %s (dkms status: %s)"
                  % (" ".join(missing), " | ".join(status.splitlines())))
            say("deb: DKMS installed %s %s for %s" % (NAME, ver, ", ".join(kvers)))

        result("deb/all-kernels", all_kernels)
        for s in series:
            def dkms_one(s=s):
                kver = kernel_env(s)["KVER"]
                ko = module_path(kver)
                check(ko, "no /lib/modules/%s/updates/dkms/virtio_balloon13.ko*" % kver)
                info = sh("modinfo", ko)
                check(re.search(r"^vermagic:\s+%s " % re.escape(kver), info, re.M),
                      "vermagic is not %s" % kver)
                check(re.search(r"^version:\s+%s$" % re.escape(ver), info, re.M),
                      "modinfo version is not %s" % ver)
                state[s] = ko
            result("deb/dkms/" + s, dkms_one)
        for s in series:
            if s not in state:
                out.not_ok("deb/vm/" + s, "no module built for %s" % s)
                failed = True
                done.add("deb/vm/" + s)
                continue
            result("deb/vm/" + s, lambda s=s: vm_test(s, state[s], ver, a.keep))
    finally:
        def remove():
            sh("apt-get", "purge", "-y", "-q", "-o", "DPkg::Lock::Timeout=900", PKG,
               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            left = leftovers()
            check(not left, "left behind: %s" % " ".join(left))
        result("deb/remove", remove)
        remove_headers(made)
        rest("not reached", fail=True)
        out.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
