// The API's limits the command checks before sending (README "REST API").
/** Largest `limit` of a list request. */
export const MAX_LIMIT = 1000
