/** What a component reports to `/health/ready`. */
export interface ComponentHealth {
  readonly status: "up" | "down"
  readonly [detail: string]: unknown
}

export const up = (details: Record<string, unknown> = {}): ComponentHealth => ({ ...details, status: "up" })
export const down = (reason: string): ComponentHealth => ({ status: "down", reason })
