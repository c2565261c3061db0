// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IAdapterRegistry} from "./IAdapterRegistry.sol";

/// @title ModelFactory adapter registry
/// @notice Records published LoRA adapters by the hash of their lineage manifest, bound to the
/// publisher by an EIP-712 signature, with the contributors' shares that the reward splitter
/// pays by. Registrations are permanent: no owner, no upgrade, no deletion.
contract AdapterRegistry is IAdapterRegistry, EIP712 {
    /// @notice The EIP-712 domain: name "ModelFactory AdapterRegistry", version "1".
    string public constant DOMAIN_NAME = "ModelFactory AdapterRegistry";
    string public constant DOMAIN_VERSION = "1";

    /// @notice The EIP-712 type of a registration.
    string public constant REGISTRATION_TYPE = "Registration(bytes32 manifestHash,bytes32 adapterHash,string baseModel,"
        "bytes32[] datanetRoots,string uri,bytes32 parent,address publisher,address[] contributors,uint16[] shares)";
    bytes32 public constant REGISTRATION_TYPEHASH = keccak256(bytes(REGISTRATION_TYPE));

    /// @notice Shares are in basis points and sum to exactly this.
    uint256 public constant TOTAL_SHARES = 10_000;

    /// @notice At most this many contributors per adapter, so that registering and paying stay
    /// well inside a block's gas (the splitter credits every contributor on each payment).
    uint256 public constant MAX_CONTRIBUTORS = 256;

    struct Record {
        bytes32 adapterHash;
        bytes32 parent;
        address publisher; // nonzero exactly when registered
        uint64 blockNumber;
        uint64 timestamp;
        string baseModel;
        string uri;
        bytes32[] datanetRoots;
        address[] contributors;
        uint16[] shares;
    }

    mapping(bytes32 manifestHash => Record) private _records;

    constructor() EIP712(DOMAIN_NAME, DOMAIN_VERSION) {}

    /// @inheritdoc IAdapterRegistry
    function register(Registration calldata r, bytes calldata signature) external {
        if (r.manifestHash == bytes32(0)) revert ZeroManifestHash();
        if (r.adapterHash == bytes32(0)) revert ZeroAdapterHash();
        if (bytes(r.baseModel).length == 0) revert EmptyBaseModel();
        if (bytes(r.uri).length == 0) revert EmptyUri();
        if (r.publisher == address(0)) revert ZeroPublisher();
        _checkShares(r.contributors, r.shares);
        if (_records[r.manifestHash].publisher != address(0)) revert AlreadyRegistered(r.manifestHash);
        if (r.parent != bytes32(0) && _records[r.parent].publisher == address(0)) revert UnknownParent(r.parent);
        if (!SignatureChecker.isValidSignatureNow(r.publisher, _hashTypedDataV4(_structHash(r)), signature)) {
            revert InvalidSignature();
        }

        Record storage rec = _records[r.manifestHash];
        rec.adapterHash = r.adapterHash;
        rec.parent = r.parent;
        rec.publisher = r.publisher;
        rec.blockNumber = uint64(block.number);
        rec.timestamp = uint64(block.timestamp);
        rec.baseModel = r.baseModel;
        rec.uri = r.uri;
        rec.datanetRoots = r.datanetRoots;
        rec.contributors = r.contributors;
        rec.shares = r.shares;

        emit AdapterRegistered(r.manifestHash, r.publisher, r.parent, r.adapterHash, r.uri);
    }

    /// @inheritdoc IAdapterRegistry
    function isRegistered(bytes32 manifestHash) external view returns (bool) {
        return _records[manifestHash].publisher != address(0);
    }

    /// @inheritdoc IAdapterRegistry
    function getRegistration(bytes32 manifestHash) external view returns (Registration memory r) {
        Record storage rec = _record(manifestHash);
        r.manifestHash = manifestHash;
        r.adapterHash = rec.adapterHash;
        r.baseModel = rec.baseModel;
        r.datanetRoots = rec.datanetRoots;
        r.uri = rec.uri;
        r.parent = rec.parent;
        r.publisher = rec.publisher;
        r.contributors = rec.contributors;
        r.shares = rec.shares;
    }

    /// @inheritdoc IAdapterRegistry
    function registeredAt(bytes32 manifestHash) external view returns (uint64 blockNumber, uint64 timestamp) {
        Record storage rec = _record(manifestHash);
        return (rec.blockNumber, rec.timestamp);
    }

    /// @inheritdoc IAdapterRegistry
    function sharesOf(bytes32 manifestHash)
        external
        view
        returns (address[] memory contributors, uint16[] memory shares)
    {
        Record storage rec = _record(manifestHash);
        return (rec.contributors, rec.shares);
    }

    /// @inheritdoc IAdapterRegistry
    function structHash(Registration calldata r) external pure returns (bytes32) {
        return _structHash(r);
    }

    /// @inheritdoc IAdapterRegistry
    function hashRegistration(Registration calldata r) external view returns (bytes32) {
        return _hashTypedDataV4(_structHash(r));
    }

    /// @inheritdoc IAdapterRegistry
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _record(bytes32 manifestHash) private view returns (Record storage rec) {
        rec = _records[manifestHash];
        if (rec.publisher == address(0)) revert NotRegistered(manifestHash);
    }

    /// @dev EIP-712 `encodeData`: strings are hashed, and each array is hashed as the
    /// concatenation of its elements each padded to 32 bytes (which is what abi.encodePacked
    /// does for the elements of an array).
    function _structHash(Registration calldata r) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                REGISTRATION_TYPEHASH,
                r.manifestHash,
                r.adapterHash,
                keccak256(bytes(r.baseModel)),
                keccak256(abi.encodePacked(r.datanetRoots)),
                keccak256(bytes(r.uri)),
                r.parent,
                r.publisher,
                keccak256(abi.encodePacked(r.contributors)),
                keccak256(abi.encodePacked(r.shares))
            )
        );
    }

    /// @dev Contributors strictly ascending (no zero address, no duplicates), shares nonzero and
    /// summing to exactly TOTAL_SHARES. One pass, no nested loop.
    function _checkShares(address[] calldata contributors, uint16[] calldata shares) private pure {
        uint256 n = contributors.length;
        if (n == 0) revert NoContributors();
        if (n > MAX_CONTRIBUTORS) revert TooManyContributors(n, MAX_CONTRIBUTORS);
        if (shares.length != n) revert LengthMismatch(n, shares.length);
        uint256 sum;
        address previous;
        for (uint256 i; i < n; ++i) {
            address c = contributors[i];
            if (c == address(0)) revert ZeroAddressContributor();
            if (i > 0) {
                if (c == previous) revert DuplicateContributor(c);
                if (c < previous) revert ContributorsNotSorted(i);
            }
            if (shares[i] == 0) revert ZeroShare(i);
            sum += shares[i];
            previous = c;
        }
        if (sum != TOTAL_SHARES) revert SharesNotTenThousand(sum);
    }
}
