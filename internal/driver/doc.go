// Package driver is the contract between the agent and its network drivers (bridge, overlay): the
// NetworkDriver interface every driver implements, the optional Pruner, the NetnsManager that owns
// containers' network namespaces, the one AttachRequest the agent sends, and the optional
// PortPublisher through which the agent keeps a host port published by one container whatever its
// driver.
//
// The contract speaks the API's types (api.Network, api.ContainerEndpoint, api.PortMapping) at its
// edge: a driver converts to its own representation inside, and nothing converts back and forth on the
// way. Drivers import this package; this package imports no driver, and drivers never import the agent.
//
// Invariants: every method is idempotent (creating what exists as asked, attaching what is attached,
// deleting or detaching what is gone are not errors); errors wrap errdefs classes.
package driver
