"""An Ansible connection to a booted systemd-nspawn container through nsenter.

The deploy tests' stand-in for ssh: the playbook runs unchanged, each module runs
inside the container (its mount, UTS, IPC, PID and network namespaces, its root),
and files travel through /proc/LEADER/root. ansible-core has no chroot or nspawn
connection of its own (those live in community.general).
"""
import shutil
import subprocess

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
    name: nsenter
    short_description: run tasks in a systemd-nspawn container through nsenter
    description: commands run with nsenter in every namespace of the container's init
    author: tvm-edge-rpc tests
    options:
      leader:
        description: PID (on this machine) of the container's systemd
        vars:
          - name: nsenter_leader
"""


class Connection(ConnectionBase):
    transport = "nsenter"
    has_pipelining = True

    def _connect(self):
        self._connected = True
        return self

    def _root(self) -> str:
        return "/proc/%s/root" % self._leader()

    def _leader(self) -> str:
        leader = self.get_option("leader")
        if not leader:
            raise AnsibleConnectionFailure("set nsenter_leader to the container's init PID")
        return str(leader)

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        argv = ["nsenter", "-t", self._leader(), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                "/bin/sh", "-c", cmd]
        proc = subprocess.run(argv, input=in_data, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        return proc.returncode, proc.stdout, proc.stderr

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        shutil.copyfile(in_path, self._root() + out_path)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        shutil.copyfile(self._root() + in_path, out_path)

    def close(self):
        self._connected = False
