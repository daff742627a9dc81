#!/bin/sh
# Run once by `lockstep image build debian`, in the guest, chrooted on the new root file
# system: the host unpacked every package and wrote dpkg's database with each package
# "unpacked"; this runs their preinst scripts and `dpkg --configure -a`, then strips what
# must differ per VM (machine id, SSH host keys: made again at first boot).
# Root gets an empty password: console login without one (set one in your VMs).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
export LC_ALL=C LANGUAGE=C LANG=C HOME=/root
log=/var/log/lockstep-configure.log
step() { echo "lockstep-configure: $*"; echo "== $*" >>"$log"; }

# Maintainer scripts must not start services here.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d

packages=$(cat /var/lib/lockstep/packages)
step "preinst install ($(echo "$packages" | wc -w) packages)"
for p in $packages; do
    f=/var/lib/dpkg/info/$p.preinst
    [ -x "$f" ] || continue
    # As dpkg runs it: dpkg-maintscript-helper reads these.
    DPKG_MAINTSCRIPT_PACKAGE=${p%%:*} DPKG_MAINTSCRIPT_NAME=preinst \
        DPKG_MAINTSCRIPT_ARCH=riscv64 DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT= \
        "$f" install >>"$log" 2>&1 || step "warning: preinst of $p failed"
done

step "dpkg --configure -a"
if ! dpkg --configure -a >>"$log" 2>&1; then
    tail -n 30 "$log"
    step "dpkg --configure -a failed"
    exit 1
fi
ldconfig
# The kernel's modules (put on the disk by the host, from the pulled kernel package).
for k in /usr/lib/modules/*; do
    [ -d "$k" ] && depmod -a "${k##*/}" >>"$log" 2>&1
done

step "first-boot settings"
# SSH host keys: made per VM at first boot by openssh-server's sshd-keygen.service.
rm -f /etc/ssh/ssh_host_*
# "uninitialized": the next boot is a first boot (ConditionFirstBoot), which makes a new
# machine id and, by openssh-server's sshd-keygen.service, the SSH host keys.
echo uninitialized >/etc/machine-id
rm -f /var/lib/dbus/machine-id
passwd -d root >>"$log" 2>&1 || step "warning: passwd -d root failed"
systemctl enable systemd-networkd.service >>"$log" 2>&1 ||
    step "warning: systemctl enable failed"
systemctl mask systemd-networkd-wait-online.service >>"$log" 2>&1 || true
rm -f /usr/sbin/policy-rc.d
rm -rf /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
step "done"
exit 0
