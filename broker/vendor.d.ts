// Packages without their own type definitions.
declare module 'aedes-persistence-redis' {
  import type { Redis, RedisOptions } from 'ioredis'
  interface AedesPersistenceRedisOptions extends RedisOptions {
    conn?: Redis
    maxSessionDelivery?: number
    packetTTL?: (packet: unknown) => number
  }
  function aedesPersistenceRedis (opts?: AedesPersistenceRedisOptions): unknown
  export default aedesPersistenceRedis
}
