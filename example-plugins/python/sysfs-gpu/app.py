"""Device plugin: reports GPUs the host cannot see through NVML, from the
AMD-style files of a sysfs tree (`amdgpu` exposes them). The Python port of
the Rust `sysfs-gpu` example, with the same behaviour::

    <root>/card<N>/device/mem_info_vram_total   bytes
    <root>/card<N>/device/mem_info_vram_used    bytes
    <root>/card<N>/device/gpu_busy_percent      optional, 0-100
    <root>/card<N>/device/product_name          optional
    <root>/card<N>/device/vendor, device        optional, PCI ids (0x1002 = AMD)
    <root>/card<N>/device/hwmon/hwmon*/temp1_input   optional, millidegrees C

The plugin sees only what its manifest's `permissions.filesystem` grants
read-only and the operator's policy allows. A card without the two memory
files is skipped; a card whose files cannot be read or make no sense is
reported offline with an `error` annotation. Ids are `sysfs:card<N>`.

Config: `root` (default `/sys/class/drm`), a guest path.
"""

import os
from typing import Optional, Union

import plugbox_plugin as pb
from plugbox_plugin.exports import *  # noqa: F401,F403 - the component's exports

MIB = 1024 * 1024
SOURCE = "plugin:sysfs-gpu"


class Missing:
    pass


class Bad:
    def __init__(self, why: str):
        self.why = why


def _reason(e: OSError) -> str:
    """The error as Rust's `std::io::Error` shows it (both read wasi-libc's `strerror`)."""
    return f"{e.strerror} (os error {e.errno})" if e.errno is not None else str(e)


def read_num(path: str) -> Union[int, Missing, Bad]:
    """A number in a sysfs file: decimal or `0x` hex."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return Missing()
    except (OSError, UnicodeDecodeError) as e:
        why = _reason(e) if isinstance(e, OSError) else "not UTF-8"
        return Bad(f"cannot read `{path}`: {why}")
    t = text.strip()
    digits, base = (t[2:], 16) if t.startswith("0x") else (t, 10)
    allowed = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
    if digits and all(c in allowed for c in digits):
        value = int(digits, base)
        if value < 2**64:
            return value
    return Bad(f"`{path}` holds `{t}`, not a number")


def read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def temperature(device: str) -> Optional[float]:
    """The first `hwmon*/temp1_input` under `device`, in degrees C."""
    try:
        dirs = sorted(os.path.join(device, "hwmon", d) for d in os.listdir(os.path.join(device, "hwmon")))
    except OSError:
        return None
    for d in dirs:
        milli = read_num(os.path.join(d, "temp1_input"))
        if isinstance(milli, int):
            return milli / 1000.0
    return None


def card_number(name: str) -> Optional[int]:
    rest = name[4:] if name.startswith("card") else ""
    if rest and rest.isascii() and rest.isdigit() and int(rest) < 2**32:
        return int(rest)
    return None


class SysfsGpu(pb.Plugin):
    def __init__(self, config: pb.Config):
        root = config.get_str("root")
        root = "/sys/class/drm" if root is None else root
        if not root.startswith("/"):
            raise pb.PluginError(f"config `root` must be an absolute guest path, got `{root}`")
        self.root = root

    def card(self, n: int):
        device = os.path.join(self.root, f"card{n}", "device")
        total = read_num(os.path.join(device, "mem_info_vram_total"))
        used = read_num(os.path.join(device, "mem_info_vram_used"))
        vendor = read_text(os.path.join(device, "vendor"))
        pci = read_text(os.path.join(device, "device"))
        name = read_text(os.path.join(device, "product_name"))
        if name is None:
            if vendor == "0x1002" and pci is not None:
                name = f"AMD GPU {pci}"
            elif vendor is not None and pci is not None:
                name = f"GPU {vendor}:{pci}"
            else:
                name = f"GPU card{n}"
        report = pb.DeviceReport(f"sysfs:card{n}", pb.DeviceKind.GPU, name, SOURCE)
        if isinstance(total, Missing) and isinstance(used, Missing):
            return None
        problem = None
        if isinstance(total, int) and isinstance(used, int):
            if used <= total:
                report.memory_total_mb = total // MIB
                report.memory_used_mb = min(-(-used // MIB), report.memory_total_mb)
                report.memory_free_mb = report.memory_total_mb - report.memory_used_mb
            else:
                problem = f"VRAM used ({used} bytes) exceeds total ({total} bytes)"
        elif isinstance(total, Bad):
            problem = total.why
        elif isinstance(used, Bad):
            problem = used.why
        elif isinstance(total, Missing):
            problem = "`mem_info_vram_total` is missing"
        else:
            problem = "`mem_info_vram_used` is missing"
        if problem is not None:
            report.online = False
            report.annotations.append(("error", problem))
            return report
        busy = read_num(os.path.join(device, "gpu_busy_percent"))
        if isinstance(busy, int):
            report.utilization = float(min(busy, 100))
        report.temperature_c = temperature(device)
        if vendor is not None and pci is not None:
            report.annotations.append(("pci-id", f"{vendor}:{pci}"))
        report.annotations.append(("sysfs-path", device))
        return report

    def probe(self):
        try:
            entries = os.listdir(self.root)
        except OSError as e:
            raise pb.PluginError(
                f"cannot read `{self.root}`: {_reason(e)} (grant it read-only in the manifest's "
                "`permissions.filesystem`; outside the plugin's directory the operator's policy must allow it)"
            ) from None
        cards = sorted(n for n in (card_number(e) for e in entries) if n is not None)
        return [r for r in (self.card(n) for n in cards) if r is not None]


pb.export(SysfsGpu)
