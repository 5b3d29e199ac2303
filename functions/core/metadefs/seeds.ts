/**
 * Hangar's own metadata definitions, written at first start (MetadefsService.ensureSeeded): the
 * image properties the specification names, with the values clients and consoles should offer.
 * Shapes follow Glance's etc/metadefs/*.json (glance-common-image-props, compute-hypervisor).
 * Bump `version` to add definitions to existing tables; a new version writes only namespaces
 * whose names are free.
 */
import type { MetadefSeed } from './metadefs.ts';

/** The `os_distro` values of the Rackspace Cloud Images concepts, with their common names. */
export const OS_DISTROS: ReadonlyArray<readonly [string, string]> = [
  ['arch', 'Arch Linux'],
  ['centos', 'Community Enterprise Operating System'],
  ['debian', 'Debian'],
  ['fedora', 'Fedora'],
  ['freebsd', 'FreeBSD'],
  ['gentoo', 'Gentoo Linux'],
  ['mandrake', 'Mandrakelinux (MandrakeSoft)'],
  ['mandriva', 'Mandriva Linux'],
  ['mes', 'Mandriva Enterprise Server'],
  ['msdos', 'Microsoft Disk Operating System'],
  ['netbsd', 'NetBSD'],
  ['netware', 'Novell NetWare'],
  ['openbsd', 'OpenBSD'],
  ['opensolaris', 'OpenSolaris'],
  ['opensuse', 'openSUSE'],
  ['rhel', 'Red Hat Enterprise Linux'],
  ['sled', 'SUSE Linux Enterprise Desktop'],
  ['ubuntu', 'Ubuntu'],
  ['windows', 'Microsoft Windows'],
];

/** Nova's architecture names (nova.objects.fields.Architecture), which its scheduler compares. */
const ARCHITECTURES = [
  'alpha',
  'armv6',
  'armv7l',
  'armv7b',
  'aarch64',
  'cris',
  'i686',
  'ia64',
  'lm32',
  'm68k',
  'microblaze',
  'microblazeel',
  'mips',
  'mipsel',
  'mips64',
  'mips64el',
  'openrisc',
  'parisc',
  'parisc64',
  'ppc',
  'ppcle',
  'ppc64',
  'ppc64le',
  'ppcemb',
  's390',
  's390x',
  'sh4',
  'sh4eb',
  'sparc',
  'sparc64',
  'unicore32',
  'x86_64',
  'xtensa',
  'xtensaeb',
];

const HYPERVISOR_TYPES = [
  'baremetal',
  'hyperv',
  'kvm',
  'lxc',
  'powervm',
  'qemu',
  'uml',
  'vmware',
  'vz',
  'xen',
];

const IMAGE = [{ name: 'OS::Glance::Image' }];

export const HANGAR_METADEF_SEED: MetadefSeed = {
  version: 'hangar-1',
  // Glance's seeded resource types: the kinds of resource a namespace can describe.
  resourceTypes: [
    'OS::Cinder::Volume',
    'OS::Glance::Image',
    'OS::Nova::Aggregate',
    'OS::Nova::Flavor',
    'OS::Nova::Server',
  ],
  // Glance's db_load_metadefs gives loaded namespaces this owner.
  owner: 'admin',
  namespaces: [
    {
      namespace: 'Hangar::OperatingSystem',
      display_name: 'Operating System',
      description:
        'The operating system an image holds, so clients can find images by distribution and version.',
      visibility: 'public',
      protected: true,
      resource_type_associations: IMAGE,
      properties: {
        os_distro: {
          title: 'OS Distro',
          description: `The common name of the operating system distribution, in lowercase: ${OS_DISTROS.map(
            ([value, label]) => `${value} (${label})`,
          ).join(', ')}.`,
          type: 'string',
          enum: OS_DISTROS.map(([value]) => value),
        },
        os_version: {
          title: 'OS Version',
          description:
            'The operating system version as specified by the distributor (for example 12.04, 8, 11).',
          type: 'string',
        },
      },
    },
    {
      namespace: 'Hangar::ComputeRequirements',
      display_name: 'Compute Requirements',
      description:
        'What an image needs from the flavor and the host that boot it: memory, disk, CPU architecture and hypervisor.',
      visibility: 'public',
      protected: true,
      resource_type_associations: IMAGE,
      properties: {
        min_ram: {
          title: 'Minimum RAM',
          description: 'The RAM, in MB, a flavor must provide to boot the image.',
          type: 'integer',
          minimum: 0,
        },
        min_disk: {
          title: 'Minimum Disk',
          description: 'The disk, in GB, a flavor must provide to boot the image.',
          type: 'integer',
          minimum: 0,
        },
        architecture: {
          title: 'CPU Architecture',
          description: 'The CPU architecture the hypervisor must support (Nova architecture names).',
          type: 'string',
          enum: ARCHITECTURES,
        },
        hypervisor_type: {
          title: 'Hypervisor Type',
          description: 'The hypervisor the image requires (used by the scheduler to pick a host).',
          type: 'string',
          enum: HYPERVISOR_TYPES,
        },
        hypervisor_version_requires: {
          title: 'Hypervisor Version Requires',
          description:
            'The hypervisor versions the image works with, as version constraints (for example ">=6.0" or ">=6.0,<6.2").',
          type: 'string',
        },
        auto_disk_config: {
          title: 'Auto Disk Config',
          description:
            'Whether the hypervisor expands the partition and file system found on the image to fit the server disk: True, False, or disabled (the user may not turn it on).',
          type: 'string',
          enum: ['True', 'False', 'disabled'],
        },
      },
    },
  ],
};
