"""The local Offergrid: a stand-in for the reseller marketplace API, in process or on a port.

`app.create_app(config)` builds it; `server.running_sandbox(config)` serves it on a loopback port;
`catalog.seed_catalog(seed)` gives its seeded providers, offers and ZIP codes; `state.Sandbox`
holds its orders and rules. It never imports the `offergrid` client package: it is the peer the
client is tested against.
"""
