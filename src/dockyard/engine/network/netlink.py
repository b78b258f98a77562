"""A small, blocking rtnetlink client: one NETLINK_ROUTE socket per namespace.

Role: the link, address and route operations Docker's bridge driver performs through
vishvananda/netlink, over a real socket, with the wire format in `rtnl_codec` (pure). Callers
on the asyncio loop use `asyncio.to_thread`; an `Rtnl` is used by one thread at a time.

Invariants:
- A socket is bound to the network namespace current when it was created and acts there for
  its whole life, whatever thread later uses it; `Rtnl.open(netns)` creates it on a throwaway
  thread inside `netns`, so no long-lived thread ever changes namespace.
- Every change is sent with NLM_F_ACK and not returned from until its ack or error with the
  same sequence number arrived; answers to other sequence numbers are dropped; dumps are read
  to NLMSG_DONE and retried when the kernel marks them interrupted (NLM_F_DUMP_INTR).
- Kernel refusals raise `NetlinkError(errno, "<operation> <name>: <strerror>")`; idempotent
  operations (delete of a missing link, an existing address) swallow exactly their errno.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path
from types import TracebackType

from dockyard.engine.network import netns as netns_mod
from dockyard.engine.network import rtnl_codec as codec
from dockyard.engine.network.rtnl_codec import Link, NetlinkError

__all__ = ["Link", "NetlinkError", "Rtnl"]

# Dumps arrive in skbs of up to 32 KiB (netlink_dump's allocation); a datagram longer than the
# read buffer would be truncated, so the buffer is larger than any datagram.
RECV_BUFFER_BYTES = 64 * 1024
# SO_RCVBUF: room for a dump of a few thousand links without an ENOBUFS overrun.
SOCKET_RCVBUF_BYTES = 4 * 1024 * 1024
DUMP_ATTEMPTS = 5
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; not exported by Python 3.11's socket module
SOL_NETLINK = 270
# The kernel answers rtnetlink requests synchronously; no answer in this long is a bug (or a
# lost reply), and a thread blocked forever would starve asyncio's default executor.
REPLY_TIMEOUT_S = 30.0


class Rtnl:
    """One NETLINK_ROUTE socket, in the namespace that was current when it was opened."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0
        # One request in flight per socket: concurrent asyncio.to_thread calls on one Rtnl
        # would otherwise read, and drop as stale, each other's answers.
        self._lock = threading.Lock()

    @classmethod
    def open(cls, netns: Path | None = None) -> Rtnl:
        """A client for the current namespace, or for the one bind-mounted at `netns`."""
        if netns is None:
            return cls(_open_socket())
        return cls(netns_mod.run_in(netns, _open_socket))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- links ----------------------------------------------------------------------------
    def links(self) -> list[Link]:
        return [
            codec.decode_link(m.payload)
            for m in self._dump(codec.RTM_GETLINK, codec.dump_links(), "list links")
            if m.msg_type == codec.RTM_NEWLINK
        ]

    def link(self, name: str) -> Link | None:
        """The link called `name`, or None if there is none."""
        try:
            reply = self._request(
                codec.RTM_GETLINK, 0, codec.get_link_by_name(name), f"get link {name}"
            )
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return codec.decode_link(reply[0].payload)

    def add_bridge(self, name: str, *, mtu: int = 1500) -> None:
        self._change(
            codec.RTM_NEWLINK,
            codec.NLM_F_CREATE | codec.NLM_F_EXCL,
            codec.new_bridge(name, mtu),
            f"add bridge {name}",
        )

    def add_veth(
        self, name: str, peer_name: str, *, peer_netns: Path | None = None, mtu: int | None = None
    ) -> None:
        """Creates the pair; with `peer_netns` the peer is created directly in that namespace
        (IFLA_NET_NS_FD), so its name only has to be free there."""
        payload_op = f"add veth {name}"
        if peer_netns is None:
            self._change(
                codec.RTM_NEWLINK,
                codec.NLM_F_CREATE | codec.NLM_F_EXCL,
                codec.new_veth(name, peer_name, mtu_bytes=mtu),
                payload_op,
            )
            return
        fd = os.open(peer_netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._change(
                codec.RTM_NEWLINK,
                codec.NLM_F_CREATE | codec.NLM_F_EXCL,
                codec.new_veth(name, peer_name, peer_netns_fd=fd, mtu_bytes=mtu),
                payload_op,
            )
        finally:
            os.close(fd)

    def set_netns(self, name: str, netns: Path) -> None:
        """Moves a link into the namespace bind-mounted at `netns` (moby's LinkSetNsFd); it
        arrives there down and keeps its name; the kernel drops its addresses and routes."""
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._set_link(name, "move", codec.attr_u32(codec.IFLA_NET_NS_FD, fd))
        finally:
            os.close(fd)

    def set_master(self, name: str, master: str) -> None:
        master_index = self._index(master, f"set master of {name}")
        self._set_link(name, "set master of", codec.attr_u32(codec.IFLA_MASTER, master_index))

    def set_up(self, name: str) -> None:
        self._change(codec.RTM_NEWLINK, 0, codec.set_link_up(name, True), f"set up {name}")

    def set_down(self, name: str) -> None:
        self._change(codec.RTM_NEWLINK, 0, codec.set_link_up(name, False), f"set down {name}")

    def set_mtu(self, name: str, mtu: int) -> None:
        self._set_link(name, "set mtu of", codec.attr_u32(codec.IFLA_MTU, mtu))

    def set_name(self, name: str, new_name: str) -> None:
        """Renames a link. Rename it while it is down: kernels before 6.2 refuse (EBUSY) to
        rename a running link, as moby's osl does it before setting the link up."""
        new = codec.attr_str(codec.IFLA_IFNAME, codec.check_ifname(new_name))
        self._set_link(name, "rename", new, by_index=True)

    def set_mac(self, name: str, mac: str) -> None:
        self._set_link(name, "set mac of", codec.attr(codec.IFLA_ADDRESS, codec.encode_mac(mac)))

    def set_hairpin(self, name: str, on: bool) -> None:
        """Bridge port hairpin mode (moby enables it when the userland proxy is off)."""
        index = self._index(name, f"set hairpin of {name}")
        self._change(codec.RTM_SETLINK, 0, codec.set_hairpin(index, on), f"set hairpin of {name}")

    def delete_link(self, name: str) -> None:
        """Deletes a link (a veth takes its peer with it); a missing link is not an error."""
        try:
            self._change(
                codec.RTM_DELLINK, 0, codec.delete_link_by_name(name), f"delete link {name}"
            )
        except NetlinkError as exc:
            if exc.errno != errno.ENODEV:
                raise

    # --- addresses and routes -------------------------------------------------------------
    def add_address(self, name: str, cidr: str) -> None:
        """Adds "172.18.0.1/16" to a link; an address already there is not an error."""
        op = f"add address {cidr} to {name}"
        payload = codec.new_address(self._index(name, op), cidr)
        try:
            self._change(codec.RTM_NEWADDR, codec.NLM_F_CREATE | codec.NLM_F_EXCL, payload, op)
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise

    def addresses(self) -> list[tuple[str, str]]:
        """Every IPv4 interface address, as (interface name, "address/prefix")."""
        names = codec.names_by_index(self.links())
        result = []
        for message in self._dump(
            codec.RTM_GETADDR, codec.dump_addresses(codec.AF_INET), "list addresses"
        ):
            if message.msg_type != codec.RTM_NEWADDR:
                continue
            address = codec.decode_address(message.payload)
            result.append((names.get(address.index, ""), address.cidr))
        return result

    def add_default_route(self, gateway: str, *, dev: str | None = None) -> None:
        op = f"add default route via {gateway}"
        oif = None if dev is None else self._index(dev, op)
        self._change(
            codec.RTM_NEWROUTE,
            codec.NLM_F_CREATE | codec.NLM_F_EXCL,
            codec.new_default_route(gateway, oif),
            op,
        )

    def routes(self) -> list[str]:
        """Destinations of the main table's IPv4 unicast routes, as CIDRs ("0.0.0.0/0" is
        the default route)."""
        found = []
        for message in self._dump(
            codec.RTM_GETROUTE, codec.dump_routes(codec.AF_INET), "list routes"
        ):
            if message.msg_type != codec.RTM_NEWROUTE:
                continue
            route = codec.decode_route(message.payload)
            if route.table == codec.RT_TABLE_MAIN and route.route_type == codec.RTN_UNICAST:
                found.append(route.dst)
        return found

    # --- transport ------------------------------------------------------------------------
    def _index(self, name: str, op: str) -> int:
        found = self.link(name)
        if found is None:
            raise NetlinkError(errno.ENODEV, f"{op}: link {name} not found")
        return found.index

    def _set_link(self, name: str, verb: str, *attrs: bytes, by_index: bool = False) -> None:
        """A change to an existing link. Addressed by name (ifi_index 0 + IFLA_IFNAME, which
        rtnl_newlink resolves) it takes one round trip; a rename needs the index instead."""
        op = f"{verb} {name}"
        if by_index:
            payload = codec.link_request(self._index(name, op), *attrs)
        else:
            payload = codec.link_request(
                0, codec.attr_str(codec.IFLA_IFNAME, codec.check_ifname(name)), *attrs
            )
        self._change(codec.RTM_NEWLINK, 0, payload, op)

    def _exchange(
        self, msg_type: int, flags: int, payload: bytes, op: str, *, dump: bool
    ) -> codec.Reply:
        with self._lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
            reply = codec.Reply(self._seq, dump=dump)
            self._sock.sendall(
                codec.encode_message(msg_type, flags | codec.NLM_F_REQUEST, reply.seq, payload)
            )
            while not reply.done:
                for message in codec.decode_messages(self._receive(op)):
                    if reply.feed(message):
                        break
        if reply.errno:
            raise NetlinkError(
                reply.errno, _message(op, reply.errno, reply.kernel_reason), reply.kernel_reason
            )
        return reply

    def _receive(self, op: str) -> bytes:
        """One datagram from the kernel (port id 0); others are dropped."""
        while True:
            try:
                data, _, msg_flags, address = self._sock.recvmsg(RECV_BUFFER_BYTES)
            except TimeoutError:
                raise NetlinkError(
                    errno.ETIMEDOUT, f"{op}: no answer from the kernel in {REPLY_TIMEOUT_S}s"
                ) from None
            except OSError as exc:
                # ENOBUFS: the receive queue overflowed and messages were lost; this request
                # fails, and answers still queued for it are dropped later as stale.
                raise NetlinkError(exc.errno or errno.EIO, f"{op}: {exc.strerror}") from exc
            if msg_flags & socket.MSG_TRUNC:
                raise NetlinkError(errno.EMSGSIZE, f"{op}: netlink reply truncated")
            if address[0] == 0:
                return data

    def _change(self, msg_type: int, flags: int, payload: bytes, op: str) -> None:
        self._exchange(msg_type, flags | codec.NLM_F_ACK, payload, op, dump=False)

    def _request(self, msg_type: int, flags: int, payload: bytes, op: str) -> list[codec.Message]:
        """A GET answered by the object itself (or by an error), so no NLM_F_ACK."""
        return self._exchange(msg_type, flags, payload, op, dump=False).messages

    def _dump(self, msg_type: int, payload: bytes, op: str) -> list[codec.Message]:
        for _ in range(DUMP_ATTEMPTS):
            reply = self._exchange(msg_type, codec.NLM_F_DUMP, payload, op, dump=True)
            if not reply.interrupted:
                return reply.messages
        raise NetlinkError(errno.EINTR, f"{op}: dump interrupted {DUMP_ATTEMPTS} times")


def _message(op: str, err: int, kernel_reason: str) -> str:
    text = f"{op}: {os.strerror(err)}"
    return f"{text} ({kernel_reason})" if kernel_reason else text


def _open_socket() -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, codec.NETLINK_ROUTE
    )
    try:
        try:
            # SO_RCVBUFFORCE passes net.core.rmem_max for a privileged daemon.
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_RCVBUF_BYTES)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_RCVBUF_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        sock.setsockopt(SOL_NETLINK, codec.NETLINK_EXT_ACK, 1)
        sock.setsockopt(SOL_NETLINK, codec.NETLINK_CAP_ACK, 1)
        sock.bind((0, 0))  # the kernel assigns the port id
        sock.settimeout(REPLY_TIMEOUT_S)
    except BaseException:
        sock.close()
        raise
    return sock
