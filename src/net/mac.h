/* A NIC's MAC address when the config gives none. */
#ifndef NET_MAC_H
#define NET_MAC_H

#include <stdint.h>

/* A locally administered unicast address derived from the instance name
 * and the device name: the same on every start of the same VM (a guest's
 * network configuration keyed on its MAC keeps working), different for
 * each NIC and each VM. */
void net_derive_mac(const char *instance, const char *device, uint8_t mac[6]);

#endif
