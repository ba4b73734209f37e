export {
  OpcuaSimulator,
  SECURE_POLICY,
  startOpcuaSimulator,
  type OpcuaSecurityMode,
  type OpcuaSimulatorEvents,
  type OpcuaSimulatorOptions,
  type OpcuaWrite,
} from "./simulator.js";
export {
  DEFAULT_MINIMUM_SAMPLING_INTERVAL_MS,
  DEFAULT_OPCUA_PROFILE_YAML,
  DEFAULT_TICK_MS,
  compileOpcuaProfile,
  defaultOpcuaProfile,
  loadOpcuaProfile,
  parseOpcuaProfile,
  resolveOpcuaProfile,
  type Condition,
  type OpcuaDynamic,
  type OpcuaObjectDef,
  type OpcuaProfileInput,
  type OpcuaSimProfile,
  type OpcuaVariableDef,
} from "./profile.js";
export { ProfileDynamics, type ValueAccess } from "./dynamics.js";
export {
  OPCUA_DATA_TYPES,
  coerceValue,
  type OpcuaDataType,
  type OpcuaSimValue,
  type OpcuaValueType,
} from "./values.js";
