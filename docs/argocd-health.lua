-- Argo CD health check for ReceiptSync (receipts.prosaas.pro/v1alpha1).
-- Install as argocd-cm key resource.customizations.health.receipts.prosaas.pro_ReceiptSync
-- (see docs/gitops.md). Plain Lua 5.1, as Argo CD runs it; tested by tests/docs/test_argocd_health.py.
--
--   Progressing  a run is Pending, Queued or Started (retries included), or the operator has not
--                acted on the latest spec yet
--   Degraded     the current or last run failed for good (condition Failed=True)
--   Suspended    a scheduled sync with spec.suspend=true and no run going
--   Healthy      the current or last run finished (condition Complete=True), or a schedule is
--                waiting for its first tick
-- The message is the operator's own: "<reason>: <status.message>".
local hs = {}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(status, fallback)
  if status ~= nil and status.message ~= nil and status.message ~= "" then
    if status.reason ~= nil and status.reason ~= "" then
      return status.reason .. ": " .. status.message
    end
    return status.message
  end
  return fallback
end

local spec = obj.spec or {}
local status = obj.status
local meta = obj.metadata or {}
local scheduled = spec.schedule ~= nil and spec.schedule ~= ""
local phase = nil
if status ~= nil then
  phase = status.phase
end

-- Nothing run yet.
if phase == nil or phase == "" then
  if scheduled and spec.suspend == true then
    hs.status = "Suspended"
    hs.message = "Schedule " .. spec.schedule .. " is suspended; no run yet"
    return hs
  end
  if scheduled and status ~= nil and status.nextScheduleTime ~= nil then
    hs.status = "Healthy"
    hs.message = "Waiting for the first scheduled run at " .. status.nextScheduleTime
    return hs
  end
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up this ReceiptSync"
  return hs
end

-- A one-off sync runs once per generation: right after an edit, the old run's result is stale.
if not scheduled and meta.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < meta.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start a run for generation " .. tostring(meta.generation)
  return hs
end

if phase == "Pending" or phase == "Queued" or phase == "Started" then
  hs.status = "Progressing"
  hs.message = describe(status, "Run is " .. phase)
  return hs
end

local failed = condition(status, "Failed")
if phase == "Failed" or (failed ~= nil and failed.status == "True") then
  hs.status = "Degraded"
  hs.message = describe(status, "The last run failed")
  return hs
end

if scheduled and spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Schedule " .. spec.schedule .. " is suspended; last run: " .. describe(status, phase)
  return hs
end

local complete = condition(status, "Complete")
if phase == "Finished" or (complete ~= nil and complete.status == "True") then
  hs.status = "Healthy"
  hs.message = describe(status, "The last run finished")
  if scheduled and status.nextScheduleTime ~= nil then
    hs.message = hs.message .. "; next run at " .. status.nextScheduleTime
  end
  return hs
end

hs.status = "Progressing"
hs.message = describe(status, "Phase " .. tostring(phase))
return hs
