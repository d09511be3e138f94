/**
 * Verbatim command output from FreeBSD hosts, for the parsers of the layer-2 checks. Each sample
 * names where it was published; tabs are kept where the source had them.
 */

/**
 * `ifconfig bridge0` and `ifconfig em0` on FreeBSD 16.0-CURRENT: the host's address on the bridge,
 * its NIC a member without an address (TSO and LRO gone from em0's options while it is a member).
 * From a public Go test fixture of a FreeBSD network tool (search-index file id 69022064243).
 */
export const IFCONFIG_BRIDGE_WITH_ADDRESS = `bridge0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500
\toptions=10<VLAN_HWTAGGING>
\tether 3c:97:0e:e9:15:7c
\tinet 10.90.0.94 netmask 0xffffff00 broadcast 10.90.0.255
\tid 00:00:00:00:00:00 priority 32768 hellotime 2 fwddelay 15
\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200
\troot id 00:00:00:00:00:00 priority 32768 ifcost 0 port 0
\tbridge flags=0<>
\tmember: em0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>
\t        port 1 priority 128 path cost 20000 vlan protocol 802.1q
\tgroups: bridge
\tnd6 options=809<PERFORMNUD,IFDISABLED,STABLEADDR>
em0: flags=1008943<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500
\toptions=4e520bb<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,JUMBO_MTU,VLAN_HWCSUM,WOL_MAGIC,VLAN_HWFILTER,VLAN_HWTSO,RXCSUM_IPV6,TXCSUM_IPV6,HWSTATS,MEXTPG>
\tether 3c:97:0e:e9:15:7c
\tinet6 fe80::3e97:eff:fee9:157c%em0 prefixlen 64 scopeid 0x1
\tmedia: Ethernet autoselect (1000baseT <full-duplex>)
\tstatus: active
\tnd6 options=823<PERFORMNUD,ACCEPT_RTADV,AUTO_LINKLOCAL,STABLEADDR>
`;

/**
 * `ifconfig` of a FreeBSD 14 virtual machine: a NIC with TSO4, TSO6 and LRO on, and lo0. From a
 * public FreeBSD book's installation chapter (search-index file id 39756305113).
 */
export const IFCONFIG_VTNET_OFFLOADS = `vtnet0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500
\toptions=ec07bb<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,JUMBO_MTU,VLAN_HWCSUM,TSO4,TSO6,LRO,VLAN_HWTSO,LINKSTATE,RXCSUM_IPV6,TXCSUM_IPV6,HWSTATS>
\tether 00:16:3e:45:bc:81
\tinet 172.24.0.80 netmask 0xffffc000 broadcast 172.24.63.255
\tinet6 fe80::216:3eff:fe45:bc81%vtnet0 prefixlen 64 scopeid 0x1
\tmedia: Ethernet autoselect (10Gbase-T <full-duplex>)
\tstatus: active
\tnd6 options=23<PERFORMNUD,ACCEPT_RTADV,AUTO_LINKLOCAL>
lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384
\toptions=680003<RXCSUM,TXCSUM,LINKSTATE,RXCSUM_IPV6,TXCSUM_IPV6>
\tinet 127.0.0.1 netmask 0xff000000
\tinet6 ::1 prefixlen 128
\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x2
\tgroups: lo
`;

/**
 * The FreeBSD Handbook's bridge of em0 and em1 on FreeBSD 15 (member lines in the new format, no
 * address), from a public translation of the Handbook's "Bridging" section (file id 55044886405).
 */
export const IFCONFIG_HANDBOOK_BRIDGE = `bridge0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500
\toptions=10<VLAN_HWTAGGING>
\tether 58:9c:fc:10:12:5b
\tid 00:00:00:00:00:00 priority 32768 hellotime 2 fwddelay 15
\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200
\troot id 00:00:00:00:00:00 priority 32768 ifcost 0 port 0
\tbridge flags=0<>
\tmember: em1 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>
\t        port 3 priority 128 path cost 20000 vlan protocol 802.1q
\tmember: em0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>
\t        port 1 priority 128 path cost 20000 vlan protocol 802.1q
\tgroups: bridge
\tnd6 options=809<PERFORMNUD,IFDISABLED,STABLEADDR>
`;

/** `pfctl -s info` with pf enabled, from the README of Telegraf's pf input plugin (influxdata/telegraf). */
export const PFCTL_INFO_ENABLED = `Status: Enabled for 0 days 00:26:05           Debug: Urgent

State Table                          Total             Rate
  current entries                        2               
  searches                           11325            7.2/s
  inserts                                5            0.0/s
  removals                               3            0.0/s
Counters
  match                              11226            7.2/s
  bad-offset                             0            0.0/s
  fragment                               0            0.0/s
  short                                  0            0.0/s
  normalize                              0            0.0/s
  memory                                 0            0.0/s
`;

/** `pfctl -s nat` of a pfSense box: anchors, a `no nat` rule and static-port rules (file id 25113746321). */
export const PFCTL_NAT_PFSENSE = `no nat proto carp all
nat-anchor "natearly/*" all
nat-anchor "natrules/*" all
nat on em0 inet from 127.0.0.0/8 to any port = isakmp -> 10.0.2.4 static-port
nat on em0 inet from 192.168.42.0/24 to any port = isakmp -> 10.0.2.4 static-port
nat on em0 inet from 172.16.1.0/24 to any port = isakmp -> 10.0.2.4 static-port
nat on em0 inet6 from ::1 to any port = isakmp -> (em0) round-robin static-port
`;

/** `pfctl -s nat -a pot-nat` of the pot jail manager, in a FreeBSD guide (file id 55103906309). */
export const PFCTL_NAT_POT = "nat on em0 inet from 10.192.0.0/10 to any -> (em0) round-robin\n";

/**
 * `vm switch list` and `vm switch info` of a NAT switch vm-bhyve gave an address
 * (`vm switch create -a 192.168.8.1/24 public`), from a blog post on vm-bhyve NAT, the source of
 * ../shared/oracles/freebsd/samples/ifconfig-vm-public.txt (file id 45807922827).
 */
export const VM_SWITCH_LIST_NAT = `NAME    TYPE      IFACE      ADDRESS         PRIVATE  MTU  VLAN  PORTS
public  standard  vm-public  192.168.8.1/24  no       -    -     -
`;
export const VM_SWITCH_INFO_NAT = `------------------------
Virtual Switch: public
------------------------
  type: standard
  ident: vm-public
  vlan: -
  physical-ports: -
  bytes-in: 37302 (36.427K)
  bytes-out: 5550 (5.419K)
`;

/** A manual switch on a bridge of the host's (`vm switch create -t manual -b bridge0 public`), from a FreeBSD 15 lab guide (file id 10090521616). */
export const VM_SWITCH_LIST_MANUAL = `NAME    TYPE    IFACE    ADDRESS  PRIVATE  MTU  VLAN  PORTS
public  manual  bridge0  n/a      no       n/a  n/a   n/a
`;
export const VM_SWITCH_INFO_MANUAL = `------------------------
Virtual Switch: public
------------------------
  type: manual
  ident: bridge0
  vlan: -
  physical-ports: -
  bytes-in: 0 (OB)
  bytes-out: 0 (OB)
`;

/** `vm switch info public` with a guest's port, from vm-bhyve's README as translated in a FreeBSD book (file id 54728266677). */
export const VM_SWITCH_INFO_GUEST = `------------------------
Virtual Switch: public
------------------------
  type: auto
  ident: bridge0
  vlan: -
  nat: -
  physical-ports: re0
  bytes-in: 385868007 (367.992M)
  bytes-out: 401540470 (382.938M)

  virtual-port
    device: tap1
    vm: wintest
`;
